package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// dispatchCache keeps the dispatcher's last answer for its ttl, so a flash
// reconnect does not cost an HTTP round trip.
type dispatchCache struct {
	addrs   []string
	net     string
	expires time.Time
}

type dispatchReply struct {
	Addrs []string `json:"addrs"`
	TTL   int      `json:"ttl"`
}

// dispatch asks the dispatcher for gateway addresses. With attempt > 0 or
// recently failed addresses it always asks, telling the dispatcher what
// failed; otherwise a fresh cached answer is used.
func (c *Client) dispatch(ctx context.Context, attempt int) ([]string, error) {
	failed := c.failedList()
	if attempt == 0 && len(failed) == 0 {
		c.mu.Lock()
		cached := c.cache
		c.mu.Unlock()
		if cached.net == c.cfg.Net && time.Now().Before(cached.expires) {
			return cached.addrs, nil
		}
	}
	q := url.Values{}
	q.Set("uid", c.cfg.UID)
	q.Set("app", strconv.FormatUint(uint64(c.cfg.App), 10))
	if c.cfg.Net != "" {
		q.Set("net", c.cfg.Net)
	}
	q.Set("retry", strconv.Itoa(attempt))
	q.Set("transport", string(c.cfg.Transport))
	if len(failed) > 0 {
		// host:port for every transport (PROTOCOL.md, Transports).
		hps := make([]string, 0, len(failed))
		for _, a := range failed {
			if hp := failedHostPort(a, c.cfg.Transport); !slices.Contains(hps, hp) {
				hps = append(hps, hp)
			}
		}
		q.Set("failed", strings.Join(hps, ","))
	}
	u := strings.TrimSuffix(c.cfg.DispatchURL, "/") + "/v1/dispatch?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDispatch, err)
	}
	resp, err := c.httpc.Do(req)
	if err != nil {
		return c.stale(), fmt.Errorf("%w: %v", ErrDispatch, err)
	}
	defer resp.Body.Close()
	body := io.LimitReader(resp.Body, 64<<10)
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, body)
		return c.stale(), fmt.Errorf("%w: status %d", ErrDispatch, resp.StatusCode)
	}
	var r dispatchReply
	if err := json.NewDecoder(body).Decode(&r); err != nil {
		return c.stale(), fmt.Errorf("%w: %v", ErrDispatch, err)
	}
	addrs := make([]string, 0, min(len(r.Addrs), maxAddrs))
	for _, a := range r.Addrs {
		if a != "" && len(addrs) < maxAddrs {
			addrs = append(addrs, a)
		}
	}
	if r.TTL > 0 && len(addrs) > 0 {
		c.mu.Lock()
		c.cache = dispatchCache{addrs: addrs, net: c.cfg.Net, expires: time.Now().Add(time.Duration(r.TTL) * time.Second)}
		c.mu.Unlock()
	}
	return addrs, nil
}

// stale is the cached answer for this network even past its ttl: when the
// dispatcher cannot be reached, yesterday's gateways beat none.
func (c *Client) stale() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cache.net == c.cfg.Net {
		return c.cache.addrs
	}
	return nil
}
