// Package freeport picks TCP ports on 127.0.0.1 for servers that are started later by
// something else (a model server process, the Temporal UI), which cannot be handed a
// listener.
//
// A port the kernel hands out for port 0 comes from the ephemeral range, the same range every
// outgoing connection takes its local port from: on a busy host one of them often takes the
// port between the pick and the server's bind. Ports are therefore drawn below that range,
// where only servers that ask for a port by number go, and checked free by binding them.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowest is the smallest port drawn: above the well-known and the usual service ports.
const lowest = 10000

// Pick returns n distinct ports that were free a moment ago, below the ephemeral range.
func Pick(n int) ([]int, error) {
	hi := ephemeralLow() - 1
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	out := make([]int, 0, n)
	for tries := 0; len(out) < n; tries++ {
		if tries > 200*n {
			return nil, errors.New("no free port found below the ephemeral range")
		}
		p := lowest + rand.IntN(hi-lowest+1)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue // taken
		}
		// Held until all are picked, so the same port is not drawn twice.
		ls = append(ls, l)
		out = append(out, p)
	}
	return out, nil
}

// One returns one port, as Pick.
func One() (int, error) {
	ps, err := Pick(1)
	if err != nil {
		return 0, err
	}
	return ps[0], nil
}

// ephemeralLow is the start of the kernel's ephemeral port range (Linux's default when it
// cannot be read), kept above lowest + 1000 so there is room to draw from.
func ephemeralLow() int {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				low = v
			}
		}
	}
	return max(low, lowest+1000)
}

// Check reports whether port is free on 127.0.0.1 now.
func Check(port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("in use (%w)", err)
	}
	return l.Close()
}
