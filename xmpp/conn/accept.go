package conn

import (
	"errors"
	"net"
	"time"
)

// Accept runs ln's accept loop for every listener kind (c2s, s2s,
// components): each connection goes to handle, which returns false to stop
// the loop (the server is shutting down; it must close the connection
// itself). A closed listener ends the loop with nil; temporary errors such
// as running out of file descriptors back off as net/http does, from 5 ms
// doubling to 1 s; any other error is returned.
func Accept(ln net.Listener, handle func(net.Conn) bool) error {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if !handle(nc) {
			return nil
		}
	}
}
