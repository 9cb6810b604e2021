// Package webclient serves Fanout's demo room page, broadcast viewer and
// their built assets, embedded from dist/ (built by `make web` and
// committed, so the server builds without Node).
package webclient

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

//go:embed dist
var dist embed.FS

// contentTypes maps the extensions found in dist/ to their media types
// (set explicitly: the system's mime tables differ between machines).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
	".json": "application/json",
	".map":  "application/json",
}

// aliases are pretty paths for the pages.
var aliases = map[string]string{
	"/":       "/index.html",
	"/viewer": "/viewer.html",
}

// asset is one embedded file, ready to serve.
type asset struct {
	data  []byte
	ctype string
	etag  string
	cache string
}

var loadAssets = sync.OnceValues(func() (map[string]*asset, error) {
	out := map[string]*asset{}
	err := fs.WalkDir(dist, "dist", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := dist.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "dist")
		sum := sha256.Sum256(data)
		ctype := contentTypes[path.Ext(name)]
		if ctype == "" {
			ctype = http.DetectContentType(data)
		}
		// Pages and entry scripts keep their names across builds: revalidate
		// every time (cheap, thanks to the ETag). Chunks are named by hash.
		cache := "no-cache"
		if strings.HasPrefix(path.Base(name), "chunk-") {
			cache = "public, max-age=31536000, immutable"
		}
		out[name] = &asset{data: data, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, cache: cache}
		return nil
	})
	return out, err
})

// Handler serves the demo pages: / (the room page), /viewer.html (the
// broadcast viewer) and /assets/*. Anything else is 404, so mounting it
// at "/" leaves other paths' 404s intact.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assets, err := loadAssets()
		if err != nil {
			http.Error(w, "web assets unavailable: "+err.Error(), http.StatusInternalServerError)
			return
		}
		name := path.Clean("/" + r.URL.Path)
		if a, ok := aliases[name]; ok {
			name = a
		}
		f := assets[name]
		if f == nil {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.ctype)
		h.Set("Cache-Control", f.cache)
		h.Set("ETag", f.etag)
		h.Set("X-Content-Type-Options", "nosniff")
		if f.ctype == contentTypes[".html"] {
			h.Set("Referrer-Policy", "no-referrer")
		}
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.data))
	})
}
