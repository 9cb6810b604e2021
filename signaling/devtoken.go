package signaling

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/livekit/protocol/auth"
)

// devTokenValidity is how long a dev token is valid.
const devTokenValidity = 6 * time.Hour

// maxDevTokenField bounds the room, identity and name of a dev token, in bytes.
const maxDevTokenField = 256

// devTokenResponse is the JSON body of /api/dev-token.
type devTokenResponse struct {
	Token string `json:"token"`
	URL   string `json:"url"`
}

// DevTokenHandler serves GET /api/dev-token?room=R&identity=I[&name=N]: it
// mints a join token (roomJoin, canPublish, canSubscribe, canPublishData,
// canUpdateOwnMetadata) signed with key/secret, and returns it with the
// WebSocket URL of this server, so the demo page works without a token
// service. With &viewer=1 the token is subscribe-only and hidden (the
// broadcast viewer page). Anyone who can reach it can join any room: register it in dev
// mode only.
func DevTokenHandler(key, secret string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		q := r.URL.Query()
		room, identity, name := q.Get("room"), q.Get("identity"), q.Get("name")
		for _, f := range []struct {
			label, value string
			required     bool
		}{{"room", room, true}, {"identity", identity, true}, {"name", name, false}} {
			if err := checkDevTokenField(f.label, f.value, f.required); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
		token, err := auth.NewAccessToken(key, secret).
			SetIdentity(identity).
			SetName(name).
			SetValidFor(devTokenValidity).
			SetVideoGrant(devGrant(room, q.Get("viewer") == "1")).
			ToJWT()
		if err != nil {
			http.Error(w, "cannot sign token: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(devTokenResponse{Token: token, URL: wsURL(r)})
	})
}

// devGrant is a participant's grant, or with viewer a hidden subscribe-only one.
func devGrant(room string, viewer bool) *auth.VideoGrant {
	yes, publish := true, !viewer
	return &auth.VideoGrant{
		RoomJoin: true, Room: room, Hidden: viewer,
		CanPublish: &publish, CanSubscribe: &yes, CanPublishData: &publish, CanUpdateOwnMetadata: &yes,
	}
}

// checkDevTokenField rejects empty required values, overlong values,
// invalid UTF-8, control characters and surrounding spaces.
func checkDevTokenField(label, v string, required bool) error {
	switch {
	case v == "" && required:
		return fmt.Errorf("missing %s", label)
	case len(v) > maxDevTokenField:
		return fmt.Errorf("%s longer than %d bytes", label, maxDevTokenField)
	case !utf8.ValidString(v):
		return fmt.Errorf("%s is not valid UTF-8", label)
	case strings.TrimSpace(v) != v:
		return fmt.Errorf("%s has leading or trailing spaces", label)
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		return fmt.Errorf("%s contains control characters", label)
	}
	return nil
}

// wsURL is the WebSocket URL of this server as the client reached it:
// wss behind TLS (or a proxy that says so), ws otherwise.
func wsURL(r *http.Request) string {
	scheme := "ws"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "wss"
	}
	return scheme + "://" + r.Host
}
