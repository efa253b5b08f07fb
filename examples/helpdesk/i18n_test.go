package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/mailsync/mailsync"
)

// Every Problem code of the library has its Portuguese wording, filled
// with the problem's parameters; English shows the library's message, and
// a code this host does not know falls back to it.
func TestTranslateProblem(t *testing.T) {
	for _, c := range mailsync.ProblemCodes {
		s := translateProblem("pt", mailsync.Problem{Field: "x", Code: c, Message: "english", Limit: 42})
		if s == "english" || s == "" || strings.Contains(s, "%") {
			t.Errorf("%s: %q", c, s)
		}
	}
	for _, c := range []struct {
		p    mailsync.Problem
		want string
	}{
		{mailsync.Problem{Field: "port", Code: mailsync.CodeOutOfRange, Limit: 65535, Message: "99999 is out of range 1-65535"}, "fora do intervalo 1-65535"},
		{mailsync.Problem{Field: "post_action.folder", Code: mailsync.CodeTooLong, Limit: 255, Message: "is longer than 255 bytes"}, "é demasiado longo (máximo 255)"},
		{mailsync.Problem{Field: "connected_with", Code: mailsync.CodeRequired, Message: "names no ticket type"}, "escolha pelo menos um tipo de ticket"},
		{mailsync.Problem{Field: "connected_with[1]", Code: mailsync.CodeRequired, Message: "is empty"}, "escolha pelo menos um tipo de ticket"},
		{mailsync.Problem{Field: "user", Code: mailsync.CodeRequired, Message: "is required"}, "é obrigatório"},
		{mailsync.Problem{Field: "user", Code: "some_new_code", Message: "is odd"}, "is odd"},
		{mailsync.Problem{Field: "user", Message: "from a provider without codes"}, "from a provider without codes"},
	} {
		if got := translateProblem("pt", c.p); got != c.want {
			t.Errorf("pt %+v = %q, want %q", c.p, got, c.want)
		}
	}
	if got := translateProblem("en", mailsync.Problem{Field: "user", Code: mailsync.CodeRequired, Message: "is required"}); got != "is required" {
		t.Errorf("en: %q", got)
	}
}

// The resolver's own problems carry a Code, so they show translated too.
func TestResolverProblemsTranslate(t *testing.T) {
	r := &Resolver{}
	for name, conn := range map[string]mailsync.Connection{
		"API":  {Name: "c", OAuth: &mailsync.OAuth{Provider: mailsync.GmailAPI}},
		"smtp": {Name: "c", Protocol: "smtp"},
	} {
		_, _, err := r.connector(context.Background(), conn, "x")
		var ce *mailsync.ConfigError
		if !errors.As(err, &ce) || len(ce.Problems) != 1 {
			t.Fatalf("%s: %v, want one problem", name, err)
		}
		p := ce.Problems[0]
		if p.Field != "protocol" || p.Code != mailsync.CodeUnknown || !slices.Equal(p.Allowed, []string{"imap", "pop3"}) {
			t.Errorf("%s: %+v", name, p)
		}
		if got := translateProblem("pt", p); got != "protocolo desconhecido: escolha IMAP ou POP3" {
			t.Errorf("%s: pt %q", name, got)
		}
	}
}
