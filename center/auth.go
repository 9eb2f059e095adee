package center

import (
	"crypto/subtle"
	"net/http"
	"strconv"
	"strings"

	"github.com/lcpush/lcpush/pkg/config"
)

// caller is who presented the Authorization header.
type caller struct {
	admin bool
	app   uint32 // the app whose api_key was presented
}

// mayAct reports whether c may act on app.
func (c caller) mayAct(app uint32) bool { return c.admin || c.app == app }

// authenticate reads "Authorization: Bearer <key>": the admin key or an app's
// api_key.
func authenticate(cfg *config.Config, r *http.Request) (caller, *apiError) {
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	key = strings.TrimSpace(key)
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return caller{}, unauthorized()
	}
	if subtle.ConstantTimeCompare([]byte(key), []byte(cfg.AdminKey)) == 1 {
		return caller{admin: true}, nil
	}
	if a, ok := cfg.AppByKey(key); ok {
		return caller{app: a.ID}, nil
	}
	return caller{}, unauthorized()
}

// appRequest authenticates r and resolves its {app}: 401 without a valid key,
// 404 for an unknown app, 403 when the key belongs to another app. It returns
// the configuration snapshot the request must use throughout.
func appRequest(conf *config.Holder, r *http.Request) (*config.Config, *config.App, *apiError) {
	cfg := conf.Load()
	c, e := authenticate(cfg, r)
	if e != nil {
		return nil, nil, e
	}
	id, err := strconv.ParseUint(r.PathValue("app"), 10, 32)
	if err != nil {
		return nil, nil, notFound("no such app")
	}
	app, ok := cfg.App(uint32(id))
	if !ok {
		return nil, nil, notFound("no such app")
	}
	if !c.mayAct(app.ID) {
		return nil, nil, forbidden("this key cannot act on app " + strconv.FormatUint(id, 10))
	}
	return cfg, app, nil
}
