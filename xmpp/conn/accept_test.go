package conn_test

import (
	"net"
	"testing"
	"time"

	"gatehouse/xmpp/conn"
)

func TestAccept(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan net.Conn, 3)
	done := make(chan error, 1)
	go func() {
		n := 0
		done <- conn.Accept(ln, func(nc net.Conn) bool {
			got <- nc
			n++
			return n < 2 // the second connection stops the loop
		})
	}()
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		select {
		case nc := <-got:
			defer nc.Close()
		case <-time.After(5 * time.Second):
			t.Fatal("connection not handed over")
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("handle returning false: %v", err)
	}

	// A closed listener ends the loop without an error.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- conn.Accept(ln2, func(nc net.Conn) bool { nc.Close(); return true }) }()
	_ = ln2.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("closed listener: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("loop did not end when the listener closed")
	}
	_ = ln.Close()
}
