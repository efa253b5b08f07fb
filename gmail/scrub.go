package gmail

import (
	"errors"
	"fmt"

	"google.golang.org/api/googleapi"

	"github.com/mailsync/mailsync/internal/redact"
)

// scrubber removes the connection's secrets (client secret, refresh
// tokens, every access token sent) in every encoding from text that came
// from a server. A nil *scrubber removes nothing.
type scrubber struct{ r redact.Scrubber }

func newScrubber(secrets ...string) *scrubber {
	s := &scrubber{}
	s.add(secrets...)
	return s
}

// add learns secrets (see redact.Scrubber.Add).
func (s *scrubber) add(secrets ...string) {
	if s != nil {
		s.r.Add(secrets...)
	}
}

func (s *scrubber) text(t string) string {
	if s == nil {
		return t
	}
	return s.r.Scrub(t)
}

// apiError scrubs, in place, the server's text in e and in the generated
// client's *googleapi.Error it wraps (message, body, error items,
// details), so neither e.Error() nor errors.As finds a secret.
func (s *scrubber) apiError(e *APIError) {
	if s == nil || e == nil {
		return
	}
	e.Message, e.Reason, e.Status = s.text(e.Message), s.text(e.Reason), s.text(e.Status)
	var ge *googleapi.Error
	if e.cause == nil || !errors.As(e.cause, &ge) {
		return
	}
	ge.Message, ge.Body = s.text(ge.Message), s.text(ge.Body)
	for i := range ge.Errors {
		ge.Errors[i].Message, ge.Errors[i].Reason = s.text(ge.Errors[i].Message), s.text(ge.Errors[i].Reason)
	}
	if d := fmt.Sprint(ge.Details); s.text(d) != d {
		ge.Details = nil
	}
}

// err returns err, or, when its text holds a secret, an error with the
// scrubbed text that still unwraps to err (errors.Is and errors.As keep
// working). An *APIError inside is scrubbed in place.
func (s *scrubber) err(err error) error {
	if err == nil || s == nil {
		return err
	}
	var ae *APIError
	if errors.As(err, &ae) {
		s.apiError(ae)
	}
	return s.r.Error(err)
}
