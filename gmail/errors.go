package gmail

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"

	"github.com/mailsync/mailsync"
)

// APIError is an error answer of the Gmail API. It wraps the mailsync
// sentinel that fits its status, so errors.Is(err, mailsync.ErrAuth) and
// friends work:
//
//   - 401: mailsync.ErrAuth (the token was rejected even after a refresh).
//   - 403 with reason rateLimitExceeded, userRateLimitExceeded,
//     quotaExceeded or dailyLimitExceeded, and 429: mailsync.ErrThrottled
//     (returned inside a *mailsync.ThrottledError once the retries are
//     used up; at once for dailyLimitExceeded, with RetryAfter 1 h).
//   - other 403 (insufficientPermissions: the token lacks the scope; a
//     domain policy): mailsync.ErrAuth.
//   - 5xx: mailsync.ErrConnection.
//   - 404 and 400 wrap nothing, except where the provider knows what they
//     mean (an unknown label: mailsync.ErrFolderNotFound).
//
// When the generated client google.golang.org/api/gmail/v1 made the call,
// the APIError also wraps its *googleapi.Error, so errors.As finds that
// too. It never contains a token.
type APIError struct {
	// Op is the API method, e.g. "messages.list".
	Op string
	// Code is the HTTP status.
	Code int
	// Status is Google's canonical status, e.g. "NOT_FOUND".
	Status string
	// Reason is the first error's reason, e.g. "notFound", "rateLimitExceeded".
	Reason string
	// Message is the server's message.
	Message string

	retryAfter time.Duration
	kind       error // the mailsync sentinel
	cause      error // the generated client's *googleapi.Error, if it reported the error
}

// Error describes the failure: method, status, reason and message.
func (e *APIError) Error() string {
	s := fmt.Sprintf("gmail: %s: HTTP %d", e.Op, e.Code)
	if e.Reason != "" {
		s += " " + e.Reason
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.kind == mailsync.ErrAuth && e.Code == http.StatusForbidden {
		s += " (does the token have the gmail.modify scope a post-action needs? see gmail.Scopes)"
	}
	return s
}

// Unwrap returns the mailsync sentinel the error matches, if any, and
// the *googleapi.Error of the generated client google.golang.org/api/gmail/v1
// when the error came from it.
func (e *APIError) Unwrap() []error {
	var errs []error
	for _, err := range []error{e.kind, e.cause} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// retryable reports whether the call may succeed if repeated later.
func (e *APIError) retryable() bool {
	return e.kind == mailsync.ErrThrottled || e.kind == mailsync.ErrConnection
}

// final is the error to return once the retries are used up.
func (e *APIError) final(wait time.Duration) error {
	if e.kind == mailsync.ErrThrottled {
		return &mailsync.ThrottledError{RetryAfter: wait, Err: e}
	}
	return e
}

func isNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == http.StatusNotFound
}

func isStatus(err error, code int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == code
}

// isInvalidLabel reports whether err is the 400 Gmail answers for an
// unknown label id ("Invalid label: X", "labelId not found").
func isInvalidLabel(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != http.StatusBadRequest {
		return false
	}
	m := strings.ToLower(ae.Message)
	return strings.Contains(m, "invalid label") || strings.Contains(m, "labelid not found")
}

var retryAfterInMessage = regexp.MustCompile(`Retry after (\d{4}-\d\d-\d\dT[0-9:.]+Z)`)

// errorBody is Google's JSON error shape.
type errorBody struct {
	Error struct {
		Message string `json:"message"`
		Status  string `json:"status"`
		Errors  []struct {
			Reason string `json:"reason"`
			Domain string `json:"domain"`
		} `json:"errors"`
		Details []struct {
			Reason string `json:"reason"`
		} `json:"details"`
	} `json:"error"`
}

// parseErrorBody reads the message, canonical status and first reason of
// an error answer; ok is false when body is not Google's JSON error shape.
func parseErrorBody(body []byte) (msg, status, reason string, ok bool) {
	var env errorBody
	if json.Unmarshal(body, &env) != nil {
		return "", "", "", false
	}
	for _, e := range env.Error.Errors {
		if e.Reason != "" {
			reason = e.Reason
			break
		}
	}
	for _, d := range env.Error.Details {
		if reason == "" && d.Reason != "" {
			reason = d.Reason
		}
	}
	return env.Error.Message, env.Error.Status, reason, true
}

// plainMessage is the message of an error answer that is not JSON: the
// text itself when short, otherwise the status text (HTML pages are not
// worth repeating).
func plainMessage(code int, body []byte) string {
	m := strings.TrimSpace(string(body))
	if len(m) > 200 || strings.ContainsAny(m, "<>") {
		m = http.StatusText(code)
	}
	return m
}

// parseAPIError builds an *APIError from a raw HTTP error answer (a
// batch part, or send's requests).
func parseAPIError(op string, code int, header http.Header, body []byte, now time.Time) *APIError {
	e := &APIError{Op: op, Code: code}
	var ok bool
	if e.Message, e.Status, e.Reason, ok = parseErrorBody(body); !ok {
		e.Message = plainMessage(code, body)
	}
	return e.classify(header, now)
}

// fromGoogleAPI maps an error of the generated client onto an *APIError,
// which keeps it (errors.As finds the *googleapi.Error too). It uses the
// typed fields (Code, Message, Errors[].Reason, Header for Retry-After)
// and the raw body only for what googleapi.Error does not keep: Google's
// canonical status and the details' reason.
func fromGoogleAPI(op string, ge *googleapi.Error, now time.Time) *APIError {
	e := &APIError{Op: op, Code: ge.Code, Message: ge.Message, cause: ge}
	for _, it := range ge.Errors {
		if it.Reason != "" {
			e.Reason = it.Reason
			break
		}
	}
	msg, status, reason, ok := parseErrorBody([]byte(ge.Body))
	switch {
	case ok:
		e.Status = status
		if e.Reason == "" {
			e.Reason = reason
		}
		if e.Message == "" {
			e.Message = msg
		}
	case e.Message == "" && len(ge.Errors) == 0:
		e.Message = plainMessage(ge.Code, []byte(ge.Body))
	}
	return e.classify(ge.Header, now)
}

// classify sets the retry delay and the sentinel the error wraps.
func (e *APIError) classify(header http.Header, now time.Time) *APIError {
	e.retryAfter = retryAfter(header, e.Message, now)
	if strings.EqualFold(e.Reason, "dailyLimitExceeded") && e.retryAfter == 0 {
		// Not worth retrying within the sync: the quota refills over the day.
		e.retryAfter = time.Hour
	}
	code := e.Code
	switch {
	case code == http.StatusUnauthorized:
		e.kind = mailsync.ErrAuth
	case code == http.StatusTooManyRequests:
		e.kind = mailsync.ErrThrottled
	case code == http.StatusForbidden && isRateReason(e.Reason, e.Status, e.Message):
		e.kind = mailsync.ErrThrottled
	case code == http.StatusForbidden:
		e.kind = mailsync.ErrAuth
	case code >= 500:
		e.kind = mailsync.ErrConnection
	}
	return e
}

func isRateReason(reason, status, msg string) bool {
	switch strings.ToLower(reason) {
	case "ratelimitexceeded", "userratelimitexceeded", "quotaexceeded", "dailylimitexceeded", "rate_limit_exceeded", "resource_exhausted":
		return true
	}
	return status == "RESOURCE_EXHAUSTED" || strings.Contains(msg, "Quota exceeded")
}

// retryAfter reads a Retry-After header (seconds or an HTTP date) or
// Gmail's "Retry after <RFC 3339 time>" in the message; 0 if none.
func retryAfter(h http.Header, msg string, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			return time.Duration(n) * time.Second
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(t.Sub(now), 0)
		}
	}
	if m := retryAfterInMessage.FindStringSubmatch(msg); m != nil {
		if t, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
			return max(t.Sub(now), 0)
		}
	}
	return 0
}

// tokenError maps a token source failure. Errors that already match a
// mailsync sentinel (oauthx's *Error does) keep it; a bare
// *oauth2.RetrieveError is classified here, without its response body.
func tokenError(err error) error {
	for _, s := range []error{mailsync.ErrConsentRequired, mailsync.ErrAuth, mailsync.ErrConnection, mailsync.ErrTokenExpired, mailsync.ErrInvalidConfig} {
		if errors.Is(err, s) {
			return fmt.Errorf("gmail: getting an access token: %w", err)
		}
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		desc := re.ErrorCode
		if re.ErrorDescription != "" {
			desc += ": " + re.ErrorDescription
		}
		switch {
		case re.ErrorCode == "invalid_grant":
			return fmt.Errorf("gmail: token refresh failed (%s): %w", desc, mailsync.ErrConsentRequired)
		case re.Response != nil && (re.Response.StatusCode >= 500 || re.Response.StatusCode == 429):
			return fmt.Errorf("gmail: token refresh failed (HTTP %d): %w", re.Response.StatusCode, mailsync.ErrConnection)
		case desc == "" && re.Response != nil:
			desc = re.Response.Status
		}
		return fmt.Errorf("gmail: token refresh failed (%s): %w", desc, mailsync.ErrAuth)
	}
	if isNetError(err) {
		return fmt.Errorf("gmail: getting an access token: %w: %v", mailsync.ErrConnection, err)
	}
	return fmt.Errorf("gmail: getting an access token: %w: %v", mailsync.ErrAuth, err)
}

func isNetError(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne)
}

// transportError maps a failed HTTP round trip.
func transportError(op string, err error) error {
	var ce *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ie x509.CertificateInvalidError
	if errors.As(err, &ce) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ie) {
		return fmt.Errorf("gmail: %s: %w: %v", op, mailsync.ErrTLS, err)
	}
	return fmt.Errorf("gmail: %s: %w: %v", op, mailsync.ErrConnection, err)
}
