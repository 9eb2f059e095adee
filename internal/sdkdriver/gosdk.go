package sdkdriver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/sdk"
)

// ServeGo is the Go SDK's driver (conformance/driver.md): it reads commands
// from r and writes events to w until r ends, then closes every client.
func ServeGo(r io.Reader, w io.Writer) {
	g := &goDriver{w: w, clients: map[string]*goClient{}}
	ctx, cancel := context.WithCancel(context.Background())
	g.emit(map[string]any{"ev": "ready", "sdk": "lcpush-go"})
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var wg sync.WaitGroup
	for sc.Scan() {
		var c goCmd
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			g.done(c.ID, fmt.Errorf("bad command: %w", err))
			continue
		}
		wg.Add(1)
		go func() { // commands may overlap: a BIND waits for its reply
			defer wg.Done()
			g.done(c.ID, g.run(ctx, c))
		}()
	}
	cancel()
	g.mu.Lock()
	for _, c := range g.clients {
		c.close()
	}
	g.mu.Unlock()
	wg.Wait()
}

type goCmd struct {
	Cmd     string   `json:"cmd"`
	ID      string   `json:"id"`
	Client  string   `json:"client"`
	Config  goConfig `json:"config"`
	IDs     []string `json:"ids"`
	App     uint32   `json:"app"`
	Token   string   `json:"token"`
	Type    uint16   `json:"type"`
	Payload string   `json:"payload"`
	Reply   bool     `json:"reply"`
}

type goConfig struct {
	Dispatch     string   `json:"dispatch"`
	Addrs        []string `json:"addrs"`
	Transport    string   `json:"transport"`
	App          uint32   `json:"app"`
	UID          string   `json:"uid"`
	Token        string   `json:"token"`
	TokenURL     string   `json:"token_url"`
	HB           int      `json:"hb"`
	ManualAck    bool     `json:"manual_ack"`
	BackoffMinMS int      `json:"backoff_min_ms"`
	BackoffMaxMS int      `json:"backoff_max_ms"`
	Net          string   `json:"net"`
}

type goDriver struct {
	wmu sync.Mutex
	w   io.Writer

	mu      sync.Mutex
	clients map[string]*goClient
}

type goClient struct {
	name string
	c    *sdk.Client
	done chan struct{} // closed at StateClosed
}

func (c *goClient) close() { _ = c.c.Close() }

func (g *goDriver) emit(ev map[string]any) {
	b, _ := json.Marshal(ev)
	g.wmu.Lock()
	defer g.wmu.Unlock()
	_, _ = g.w.Write(append(b, '\n'))
}

func (g *goDriver) done(id string, err error) {
	ev := map[string]any{"ev": "done", "id": id, "ok": err == nil}
	if err != nil {
		var pe *proto.Error
		if errors.As(err, &pe) {
			ev["error"] = pe.Code
		} else {
			ev["error"] = err.Error()
		}
	}
	g.emit(ev)
}

func (g *goDriver) client(name string) (*goClient, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.clients[name]
	if c == nil {
		return nil, fmt.Errorf("no client %q", name)
	}
	return c, nil
}

func (g *goDriver) run(ctx context.Context, c goCmd) error {
	switch c.Cmd {
	case "ping":
		return nil
	case "new":
		return g.newClient(c.Client, c.Config)
	}
	cl, err := g.client(c.Client)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	switch c.Cmd {
	case "connect":
		go g.connect(ctx, cl)
		return nil
	case "ack":
		ids := make([]uint64, 0, len(c.IDs))
		for _, s := range c.IDs {
			id, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return fmt.Errorf("ack id %q: %w", s, err)
			}
			ids = append(ids, id)
		}
		return cl.c.Ack(ids...)
	case "bind":
		return cl.c.Bind(rctx, c.App, c.Token)
	case "unbind":
		return cl.c.Unbind(rctx, c.App)
	case "upstream":
		return cl.c.Upstream(rctx, c.App, c.Type, []byte(c.Payload), c.Reply)
	case "close":
		cl.close()
		g.mu.Lock()
		delete(g.clients, c.Client) // the name may be used again
		g.mu.Unlock()
		select {
		case <-cl.done:
			return nil
		case <-rctx.Done():
			return errors.New("client did not report closed")
		}
	}
	return errors.New("unknown_cmd")
}

// connect starts the client. The Go SDK's Connect makes one attempt and
// reports its error; the driver protocol's connect starts a client that
// keeps trying, so the driver retries with the client's own backoff bounds
// until a final error.
func (g *goDriver) connect(ctx context.Context, cl *goClient) {
	delay := 100 * time.Millisecond
	for {
		err := cl.c.Connect(ctx)
		if err == nil {
			// A final error (a kick) stops the client; Close then reports
			// the closed state, as the protocol's SDKs do by themselves.
			<-cl.c.Done()
			_ = cl.c.Close()
			return
		}
		if errors.Is(err, sdk.ErrClosed) || errors.Is(err, sdk.ErrStarted) || ctx.Err() != nil {
			return
		}
		var pe *proto.Error
		if errors.As(err, &pe) {
			g.emit(map[string]any{"ev": "error", "client": cl.name, "code": pe.Code, "message": pe.Message})
		}
		select {
		case <-cl.c.Done():
			return
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

func (g *goDriver) newClient(name string, cfg goConfig) error {
	cl := &goClient{name: name, done: make(chan struct{})}
	var c *sdk.Client
	sc := sdk.Config{
		DispatchURL: cfg.Dispatch,
		Addrs:       cfg.Addrs,
		Transport:   sdk.Transport(cfg.Transport),
		App:         cfg.App,
		UID:         cfg.UID,
		Token:       cfg.Token,
		Net:         cfg.Net,
		Heartbeat:   time.Duration(cfg.HB) * time.Second,
		ManualAck:   cfg.ManualAck,
		BackoffMin:  time.Duration(cfg.BackoffMinMS) * time.Millisecond,
		BackoffMax:  time.Duration(cfg.BackoffMaxMS) * time.Millisecond,
		OnMessage: func(m sdk.Message) {
			qos := 0
			if m.QoS1 {
				qos = 1
			}
			g.emit(map[string]any{"ev": "message", "client": name, "app": m.App, "id": strconv.FormatUint(m.ID, 10), "qos": qos, "payload": string(m.Payload)})
		},
		OnKick: func(code int, reason string) {
			g.emit(map[string]any{"ev": "kicked", "client": name, "code": code, "reason": reason})
		},
		OnRedirect: func(addrs []string, afterMS int) {
			g.emit(map[string]any{"ev": "redirected", "client": name, "addrs": addrs, "after_ms": afterMS})
		},
		OnState: func(s sdk.State) {
			ev := map[string]any{"ev": "state", "client": name, "state": s.String()}
			if s == sdk.StateConnected && c != nil {
				ev["addr"], ev["room"] = c.Addr(), c.Room()
			}
			g.emit(ev)
			if s == sdk.StateClosed {
				close(cl.done)
			}
		},
	}
	if cfg.TokenURL != "" {
		url := cfg.TokenURL
		sc.Token, sc.TokenFunc = "", func(ctx context.Context) (string, error) { return fetchToken(ctx, url) }
	}
	c, err := sdk.New(sc)
	if err != nil {
		return err
	}
	cl.c = c
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.clients[name] != nil {
		_ = c.Close()
		return fmt.Errorf("client %q exists", name)
	}
	g.clients[name] = cl
	return nil
}

// fetchToken is the driver protocol's token provider: GET url, {"token":...}.
func fetchToken(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("token provider: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&out); err != nil || out.Token == "" {
		return "", fmt.Errorf("token provider: status %d, %v", resp.StatusCode, err)
	}
	return out.Token, nil
}
