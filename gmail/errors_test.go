package gmail

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

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
		if tc.kind == nil && e.Unwrap() != nil || tc.kind != nil && !errors.Is(e, tc.kind) {
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
