package graph

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	abs "github.com/microsoft/kiota-abstractions-go"
	absauth "github.com/microsoft/kiota-abstractions-go/authentication"
)

// recordingTransport answers the first request with a redirect to another
// host and records the headers of every request the pipeline sends.
type recordingTransport struct {
	mu   sync.Mutex
	seen []*http.Request
}

func (rt *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt.mu.Lock()
	rt.seen = append(rt.seen, req.Clone(context.Background()))
	n := len(rt.seen)
	rt.mu.Unlock()
	resp := &http.Response{
		StatusCode: http.StatusNoContent,
		Header:     http.Header{},
		Body:       io.NopCloser(strings.NewReader("")),
		Request:    req,
	}
	if n == 1 {
		resp.StatusCode = http.StatusFound
		resp.Header.Set("Location", "https://elsewhere.example:8443/landing")
	}
	return resp, nil
}

// GO-2026-5224: kiota-http-go before v1.5.5 kept the Cookie header when its
// RedirectHandler followed a redirect to another host. The adapter's
// pipeline (newAdapter) must not hand a cookie or a token to a foreign
// host.
func TestCrossHostRedirectDropsCredentials(t *testing.T) {
	rt := &recordingTransport{}
	opts := &Options{BaseURL: "https://127.0.0.1:8443/v1.0", MaxRetries: 0}
	a, err := newAdapter(&absauth.AnonymousAuthenticationProvider{}, rt, opts, newScrubber())
	if err != nil {
		t.Fatal(err)
	}
	ri := abs.NewRequestInformation()
	ri.Method = abs.GET
	ri.UrlTemplate = "{+baseurl}/me"
	ri.PathParameters = map[string]string{"baseurl": opts.BaseURL}
	ri.Headers.Add("Cookie", "session=SECRET")
	ri.Headers.Add("Authorization", "Bearer SECRET")
	_ = a.SendNoContent(context.Background(), ri, nil)

	rt.mu.Lock()
	defer rt.mu.Unlock()
	if len(rt.seen) != 2 {
		t.Fatalf("%d requests sent, want the original and the redirected one", len(rt.seen))
	}
	if got := rt.seen[0].Header.Get("Cookie"); got == "" {
		t.Fatal("the first request lacks the cookie; the test sets it up wrong")
	}
	second := rt.seen[1]
	if second.URL.Host != "elsewhere.example:8443" {
		t.Fatalf("redirect went to %s", second.URL)
	}
	for _, h := range []string{"Cookie", "Authorization"} {
		if v := second.Header.Get(h); v != "" {
			t.Errorf("cross-host redirect carried %s: %q", h, v)
		}
	}
}
