package gmail_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/api/idtoken"
	"google.golang.org/api/option"

	"github.com/mailsync/mailsync/gmail"
	"github.com/mailsync/mailsync/internal/fakegmail"
)

// certsTransport answers Google's certificate URL with the test key set,
// in the JWK form Google publishes, and refuses everything else.
type certsTransport struct{ fetches atomic.Int32 }

func (c *certsTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.String() != "https://www.googleapis.com/oauth2/v3/certs" {
		return &http.Response{StatusCode: 404, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
	}
	c.fetches.Add(1)
	pub := testKeys().PublicKey
	b, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kid": "k1", "kty": "RSA", "alg": "RS256", "use": "sig",
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}}})
	h := http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"public, max-age=3600"}}
	return &http.Response{StatusCode: 200, Header: h, Body: io.NopCloser(strings.NewReader(string(b))), Request: r}, nil
}

// TestGoogleVerifier runs the production verifier (idtoken) against the
// test key set served as Google's certificates.
func TestGoogleVerifier(t *testing.T) {
	ct := &certsTransport{}
	v, err := idtoken.NewValidator(context.Background(), option.WithHTTPClient(&http.Client{Transport: ct}))
	if err != nil {
		t.Fatal(err)
	}
	pe := newPushEnv(t, fakegmail.Options{}, func(o *gmail.PushOptions) { o.Verifier = gmail.NewGoogleVerifier(v) })
	pe.watch()
	c := goodClaims()
	if code := pe.deliver(signJWT(t, testKeys(), "k1", c), "m1", pe.fake.Email(), pe.fake.HistoryID()+1); code != 204 {
		t.Fatalf("valid token: %d, want 204", code)
	}
	if got := pe.changeList(); len(got) != 1 {
		t.Fatalf("OnChange %v, want 1", got)
	}
	c["exp"] = time.Now().Add(-time.Minute).Unix()
	expired := signJWT(t, testKeys(), "k1", c)
	c = goodClaims()
	c["aud"] = "https://other.example.com/"
	otherAud := signJWT(t, testKeys(), "k1", c)
	c = goodClaims()
	c["iss"] = "https://evil.example.com"
	otherIss := signJWT(t, testKeys(), "k1", c)
	c = goodClaims()
	c["email"] = "someone@other.iam.gserviceaccount.com"
	otherSA := signJWT(t, testKeys(), "k1", c)
	good := signJWT(t, testKeys(), "k1", goodClaims())
	p := strings.Split(good, ".")
	forged := p[0] + "." + p[1] + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 256))
	for i, tc := range []struct {
		name, tok string
		want      int
	}{
		{"expired", expired, 401}, {"wrong audience", otherAud, 401}, {"forged", forged, 401},
		{"unknown kid", signJWT(t, testKeys(), "k9", goodClaims()), 401},
		{"wrong issuer", otherIss, 403}, {"other service account", otherSA, 403},
	} {
		if code := pe.deliver(tc.tok, "bad"+string(rune('a'+i)), pe.fake.Email(), pe.fake.HistoryID()+uint64(10+i)); code != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, code, tc.want)
		}
	}
	if got := pe.changeList(); len(got) != 1 {
		t.Errorf("OnChange %v after refused tokens, want still 1", got)
	}
	if ct.fetches.Load() == 0 {
		t.Error("the certificates were never fetched")
	}
}
