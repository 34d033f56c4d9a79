package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// ErrNotLoopback is returned for a target that is not on this machine's
// loopback interface. The load generator never sends traffic elsewhere.
var ErrNotLoopback = errors.New("loadgen: target is not a loopback address (only 127.0.0.0/8, ::1 and localhost are allowed)")

// ResolveLoopback resolves host:port and returns an ip:port to dial, or
// ErrNotLoopback unless every address the host stands for is a loopback
// address. IP literals are checked as they are; names must resolve to
// loopback addresses only (so a name pointing elsewhere is refused, and the
// checked IP, not the name, is dialled).
func ResolveLoopback(ctx context.Context, addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("loadgen: target %q: %w", addr, err)
	}
	if host == "" {
		return "", fmt.Errorf("%w: %q has no host", ErrNotLoopback, addr)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if !ip.Unmap().IsLoopback() {
			return "", fmt.Errorf("%w: %s", ErrNotLoopback, addr)
		}
		return net.JoinHostPort(ip.Unmap().String(), port), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return "", fmt.Errorf("loadgen: resolve %s: %w", host, err)
	}
	if len(ips) == 0 {
		return "", fmt.Errorf("%w: %s resolves to nothing", ErrNotLoopback, host)
	}
	var pick netip.Addr
	for _, ip := range ips {
		ip = ip.Unmap()
		if !ip.IsLoopback() {
			return "", fmt.Errorf("%w: %s resolves to %s", ErrNotLoopback, host, ip)
		}
		if !pick.IsValid() || (ip.Is4() && !pick.Is4()) {
			pick = ip
		}
	}
	return net.JoinHostPort(pick.String(), port), nil
}
