package gmail

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/api/googleapi"

	"github.com/mailsync/mailsync"
)

func TestParseAPIError(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	body := func(code int, reason, status, msg string) []byte {
		return []byte(`{"error":{"code":` + strconv.Itoa(code) + `,"message":"` + msg + `","errors":[{"message":"` + msg + `","domain":"usageLimits","reason":"` + reason + `"}],"status":"` + status + `"}}`)
	}
	for name, tc := range map[string]struct {
		code   int
		header http.Header
		body   []byte
		kind   error
		after  time.Duration
	}{
		"401":            {401, nil, body(401, "authError", "UNAUTHENTICATED", "Invalid Credentials"), mailsync.ErrAuth, 0},
		"429 in message": {429, nil, body(429, "rateLimitExceeded", "RESOURCE_EXHAUSTED", "User-rate limit exceeded.  Retry after 2026-11-26T10:00:30.500Z"), mailsync.ErrThrottled, 30500 * time.Millisecond},
		"429 header":     {429, http.Header{"Retry-After": {"12"}}, body(429, "rateLimitExceeded", "RESOURCE_EXHAUSTED", "x"), mailsync.ErrThrottled, 12 * time.Second},
		"429 http date":  {429, http.Header{"Retry-After": {"Thu, 26 Nov 2026 10:01:00 GMT"}}, nil, mailsync.ErrThrottled, time.Minute},
		"403 user rate":  {403, nil, body(403, "userRateLimitExceeded", "PERMISSION_DENIED", "User Rate Limit Exceeded"), mailsync.ErrThrottled, 0},
		"403 quota":      {403, nil, body(403, "rateLimitExceeded", "PERMISSION_DENIED", "Quota exceeded for quota metric 'Queries'"), mailsync.ErrThrottled, 0},
		"403 daily":      {403, nil, body(403, "dailyLimitExceeded", "PERMISSION_DENIED", "Daily Limit Exceeded"), mailsync.ErrThrottled, time.Hour},
		"403 scope":      {403, nil, body(403, "insufficientPermissions", "PERMISSION_DENIED", "Insufficient Permission"), mailsync.ErrAuth, 0},
		"500":            {500, nil, body(500, "backendError", "INTERNAL", "Backend Error"), mailsync.ErrConnection, 0},
		"502 html":       {502, nil, []byte("<html>Bad Gateway</html>"), mailsync.ErrConnection, 0},
		"404":            {404, nil, body(404, "notFound", "NOT_FOUND", "Requested entity was not found."), nil, 0},
		"400":            {400, nil, body(400, "invalidArgument", "INVALID_ARGUMENT", "Invalid label: X"), nil, 0},
	} {
		e := parseAPIError("op", tc.code, tc.header, tc.body, now)
		if tc.kind == nil && len(e.Unwrap()) != 0 || tc.kind != nil && !errors.Is(e, tc.kind) {
			t.Errorf("%s: kind %v, want %v", name, e.Unwrap(), tc.kind)
		}
		if e.retryAfter != tc.after {
			t.Errorf("%s: retry after %s, want %s", name, e.retryAfter, tc.after)
		}
		if e.Code != tc.code || e.Error() == "" {
			t.Errorf("%s: %+v", name, e)
		}
	}
	if !isInvalidLabel(parseAPIError("op", 400, nil, body(400, "invalidArgument", "INVALID_ARGUMENT", "Invalid label: Label_1"), now)) {
		t.Error("invalid label not recognised")
	}
	if e := parseAPIError("op", 502, nil, []byte("<html>Bad Gateway</html>"), now); e.Message != "Bad Gateway" {
		t.Errorf("HTML body kept: %q", e.Message)
	}
}

// The generated client's errors map like raw answers: googleapi.Error's
// Code, Errors[].Reason and Header (Retry-After) decide, and the
// googleapi.Error stays reachable with errors.As.
func TestFromGoogleAPI(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	body := func(code int, reason, status, msg string) string {
		return `{"error":{"code":` + strconv.Itoa(code) + `,"message":"` + msg + `","errors":[{"message":"` + msg + `","domain":"usageLimits","reason":"` + reason + `"}],"status":"` + status + `"}}`
	}
	for name, tc := range map[string]struct {
		code   int
		header http.Header
		body   string
		kind   error
		after  time.Duration
		reason string
		status string
	}{
		"401":                 {401, nil, body(401, "authError", "UNAUTHENTICATED", "Invalid Credentials"), mailsync.ErrAuth, 0, "authError", "UNAUTHENTICATED"},
		"429 retry-after":     {429, http.Header{"Retry-After": {"7"}}, body(429, "rateLimitExceeded", "RESOURCE_EXHAUSTED", "Too many"), mailsync.ErrThrottled, 7 * time.Second, "rateLimitExceeded", "RESOURCE_EXHAUSTED"},
		"429 in message":      {429, nil, body(429, "rateLimitExceeded", "RESOURCE_EXHAUSTED", "User-rate limit exceeded.  Retry after 2026-11-26T10:00:05.000Z"), mailsync.ErrThrottled, 5 * time.Second, "rateLimitExceeded", "RESOURCE_EXHAUSTED"},
		"403 rate":            {403, nil, body(403, "rateLimitExceeded", "PERMISSION_DENIED", "Rate Limit Exceeded"), mailsync.ErrThrottled, 0, "rateLimitExceeded", "PERMISSION_DENIED"},
		"403 user rate":       {403, nil, body(403, "userRateLimitExceeded", "PERMISSION_DENIED", "User Rate Limit Exceeded"), mailsync.ErrThrottled, 0, "userRateLimitExceeded", "PERMISSION_DENIED"},
		"403 scope":           {403, nil, body(403, "insufficientPermissions", "PERMISSION_DENIED", "Insufficient Permission"), mailsync.ErrAuth, 0, "insufficientPermissions", "PERMISSION_DENIED"},
		"404":                 {404, nil, body(404, "notFound", "NOT_FOUND", "Requested entity was not found."), nil, 0, "notFound", "NOT_FOUND"},
		"503 html":            {503, http.Header{"Retry-After": {"2"}}, "<html>Service Unavailable</html>", mailsync.ErrConnection, 2 * time.Second, "", ""},
		"details reason only": {429, nil, `{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"RATE_LIMIT_EXCEEDED"}]}}`, mailsync.ErrThrottled, 0, "RATE_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED"},
	} {
		res := &http.Response{StatusCode: tc.code, Header: tc.header, Body: io.NopCloser(strings.NewReader(tc.body))}
		if res.Header == nil {
			res.Header = http.Header{}
		}
		err := googleapi.CheckResponse(res)
		var ge *googleapi.Error
		if !errors.As(err, &ge) {
			t.Fatalf("%s: CheckResponse gave %T", name, err)
		}
		e := fromGoogleAPI("messages.list", ge, now)
		if tc.kind == nil && len(e.Unwrap()) != 1 || tc.kind != nil && !errors.Is(e, tc.kind) {
			t.Errorf("%s: wraps %v, want %v", name, e.Unwrap(), tc.kind)
		}
		var back *googleapi.Error
		if !errors.As(e, &back) || back != ge {
			t.Errorf("%s: the googleapi.Error is not reachable", name)
		}
		if e.Code != tc.code || e.retryAfter != tc.after || e.Reason != tc.reason || e.Status != tc.status || e.Message == "" {
			t.Errorf("%s: %+v (retry after %s)", name, e, e.retryAfter)
		}
		if strings.Contains(e.Error(), "<html>") {
			t.Errorf("%s: %s", name, e.Error())
		}
	}
}
