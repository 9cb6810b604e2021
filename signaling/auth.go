package signaling

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/golang-jwt/jwt/v5"
	"github.com/livekit/protocol/auth"
)

// KeyProvider maps an API key to its secret ("" when unknown).
type KeyProvider func(key string) string

// StaticKeys is a KeyProvider over a fixed map.
func StaticKeys(keys map[string]string) KeyProvider {
	return func(key string) string { return keys[key] }
}

// tokenFromRequest finds the access token in the query or the Authorization header.
func tokenFromRequest(r *http.Request) string {
	if t := r.URL.Query().Get("access_token"); t != "" {
		return t
	}
	h := r.Header.Get("Authorization")
	if after, ok := strings.CutPrefix(h, "Bearer "); ok {
		return strings.TrimSpace(after)
	}
	return ""
}

// authError carries the HTTP status a token problem maps to.
type authError struct {
	status int
	err    error
}

func (e *authError) Error() string { return e.err.Error() }
func (e *authError) Unwrap() error { return e.err }

// Status returns the HTTP status for an error from verifyToken (500 otherwise).
func statusOf(err error) int {
	var ae *authError
	if errors.As(err, &ae) {
		return ae.status
	}
	return http.StatusInternalServerError
}

func unauthorized(err error) error { return &authError{status: http.StatusUnauthorized, err: err} }
func forbidden(err error) error    { return &authError{status: http.StatusForbidden, err: err} }

// verifyToken checks a token's signature and expiry and returns its grants.
func verifyToken(keys KeyProvider, token string) (*auth.ClaimGrants, error) {
	if token == "" {
		return nil, unauthorized(ErrNoToken)
	}
	v, err := auth.ParseAPIToken(token)
	if err != nil {
		return nil, unauthorized(fmt.Errorf("%w: %v", ErrMalformedToken, err))
	}
	secret := keys(v.APIKey())
	if secret == "" {
		return nil, unauthorized(fmt.Errorf("%w %q", ErrUnknownAPIKey, v.APIKey()))
	}
	_, grants, err := v.Verify(secret)
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) || strings.Contains(err.Error(), "expired") {
			return nil, unauthorized(ErrTokenExpired)
		}
		return nil, unauthorized(fmt.Errorf("%w: %v", ErrInvalidToken, err))
	}
	return grants, nil
}

// verifyJoin checks a token for joining a room over /rtc.
func verifyJoin(keys KeyProvider, token string) (*auth.ClaimGrants, error) {
	grants, err := verifyToken(keys, token)
	if err != nil {
		return nil, err
	}
	if grants.Identity == "" {
		return nil, unauthorized(ErrNoIdentity)
	}
	if grants.Video == nil || !grants.Video.RoomJoin {
		return nil, forbidden(ErrNoRoomJoin)
	}
	if grants.Video.Room == "" {
		return nil, forbidden(ErrNoRoom)
	}
	return grants, nil
}
