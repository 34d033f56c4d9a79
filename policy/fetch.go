package policy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"
)

// ErrPrivateAddress: a link points into the company's own network (or
// the server itself), which the fetcher refuses unless allowed: fetching
// arbitrary URLs for outsiders must not become a way into the LAN.
var ErrPrivateAddress = errors.New("policy: link points to a private or loopback address")

// HTTPFetcher fetches files behind http(s) links for scanning.
type HTTPFetcher struct {
	client   *http.Client
	maxBytes int64
}

// NewHTTPFetcher returns a fetcher that reads at most maxBytes (a larger
// file is an error: it cannot be scanned whole), gives up after timeout,
// follows at most 3 redirects, and connects only to public addresses
// unless allowPrivate (checked on the address actually dialled, so DNS
// cannot point a public name at the LAN).
func NewHTTPFetcher(maxBytes int64, timeout time.Duration, allowPrivate bool) *HTTPFetcher {
	d := &net.Dialer{Timeout: timeout, Control: func(_, address string, _ syscall.RawConn) error {
		if allowPrivate {
			return nil
		}
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		ip := net.ParseIP(host)
		if ip == nil || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
			ip.IsUnspecified() || ip.IsMulticast() {
			return fmt.Errorf("%w (%s)", ErrPrivateAddress, host)
		}
		return nil
	}}
	tr := &http.Transport{DialContext: d.DialContext, TLSHandshakeTimeout: timeout, ResponseHeaderTimeout: timeout,
		MaxIdleConns: 16, IdleConnTimeout: 30 * time.Second}
	return &HTTPFetcher{maxBytes: maxBytes, client: &http.Client{Transport: tr, Timeout: timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("more than 3 redirects")
			}
			return nil
		}}}
}

// Fetch implements LinkFetcher.
func (f *HTTPFetcher) Fetch(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	if resp.ContentLength > f.maxBytes {
		return nil, fmt.Errorf("the file is %d bytes, more than can be scanned (%d)", resp.ContentLength, f.maxBytes)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, f.maxBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > f.maxBytes {
		return nil, fmt.Errorf("the file is larger than can be scanned (%d bytes)", f.maxBytes)
	}
	return b, nil
}
