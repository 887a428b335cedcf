package testdb

import (
	"fmt"
	"net"
	"regexp"
	"sync"
	"sync/atomic"
)

// Proxy is a loopback TCP proxy in front of the test mariadbd, for tests of a database that
// stops answering without going away (a hung server, a partition that drops packets): Stall keeps
// every connection open but forwards nothing in either direction, and new connections are
// accepted but never answered; Resume forwards again, including what was held. Unlike Stop,
// nothing is refused or reset, so only a deadline can end a call made through it.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	open  chan struct{} // closed while forwarding; a fresh, open channel while stalled
	conns map[net.Conn]struct{}

	closed chan struct{}
	wg     sync.WaitGroup
	held   atomic.Int64
}

// StartProxy starts a proxy on 127.0.0.1 to the server, forwarding.
func (m *MariaDB) StartProxy() (*Proxy, error) {
	return StartProxy(fmt.Sprintf("127.0.0.1:%d", m.port))
}

// StartProxy starts a proxy on 127.0.0.1 to target (host:port), forwarding.
func StartProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("cannot listen for the proxy: %w", err)
	}
	p := &Proxy{ln: ln, target: target, open: make(chan struct{}), conns: map[net.Conn]struct{}{},
		closed: make(chan struct{})}
	close(p.open)
	p.wg.Go(p.accept)
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

var dsnAddress = regexp.MustCompile(`tcp\([^)]*\)`)

// DSN is the mysql DSN dsn with its address replaced by the proxy's.
func (p *Proxy) DSN(dsn string) string {
	return dsnAddress.ReplaceAllLiteralString(dsn, "tcp("+p.Addr()+")")
}

// Stall stops forwarding: connections stay open, bytes sent either way are held, and new
// connections are accepted but not answered.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
		p.open = make(chan struct{})
	default: // already stalled
	}
}

// Resume forwards again, first what was held during the stall.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open: // already forwarding
	default:
		close(p.open)
	}
}

// Held counts the reads (from a client or from the server) that a stall has held back so far:
// each is a call the stall kept from being answered.
func (p *Proxy) Held() int64 { return p.held.Load() }

// Close stops the proxy and closes every connection through it.
func (p *Proxy) Close() {
	p.mu.Lock()
	select {
	case <-p.closed:
		p.mu.Unlock()
		return
	default:
	}
	close(p.closed)
	_ = p.ln.Close()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// wait blocks while the proxy is stalled; false when it was closed meanwhile.
func (p *Proxy) wait() bool {
	p.mu.Lock()
	open := p.open
	p.mu.Unlock()
	select {
	case <-open:
	default:
		p.held.Add(1)
		select {
		case <-open:
		case <-p.closed:
			return false
		}
	}
	select {
	case <-p.closed:
		return false
	default:
		return true
	}
}

// track registers a connection to close on Close; false when the proxy is closed already.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.closed:
		_ = c.Close()
		return false
	default:
		p.conns[c] = struct{}{}
		return true
	}
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

func (p *Proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		if !p.track(client) {
			return
		}
		p.wg.Go(func() { p.serve(client) })
	}
}

// serve connects a client to the server once the proxy forwards, then copies both ways.
func (p *Proxy) serve(client net.Conn) {
	defer p.untrack(client)
	if !p.wait() { // a connection made during a stall is accepted, and nothing answers it
		return
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	// Either direction ending closes both connections, which ends the other.
	p.wg.Go(func() { p.pipe(server, client) })
	p.pipe(client, server)
}

// pipe copies src to dst, holding each read while the proxy is stalled.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer func() { _ = dst.Close(); _ = src.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.wait() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
