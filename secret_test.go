package mailsync_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/mailsync/mailsync"
)

func TestSecretsNeverPrint(t *testing.T) {
	const secret, refresh = "s3cr3t-client-value", "r3fr3sh-token-value"
	c := mailsync.Connection{Name: "n", User: "u", Enabled: true, ConnectedWith: []string{"t"},
		OAuth: &mailsync.OAuth{Provider: mailsync.MicrosoftGraph, ClientID: "id", ClientSecret: secret, TenantID: "t", RefreshToken: refresh}}
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	logger.Info("conn", "c", c, "oauth", *c.OAuth, "ptr", c.OAuth, "secret", c.OAuth.ClientSecret)
	logger.Info("text", "s", c.OAuth.RefreshToken)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("conn", "c", c, "oauth", c.OAuth)
	outputs := []string{
		fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s %q", c, c, c, c, c),
		fmt.Sprintf("%v %+v %#v %s %q %x", *c.OAuth, *c.OAuth, *c.OAuth, *c.OAuth, *c.OAuth, *c.OAuth),
		fmt.Sprintf("%v %+v %#v %s %q %x %X %d", c.OAuth.ClientSecret, c.OAuth.RefreshToken, c.OAuth.ClientSecret, c.OAuth.ClientSecret, c.OAuth.ClientSecret, c.OAuth.ClientSecret, c.OAuth.ClientSecret, c.OAuth.ClientSecret),
		fmt.Sprintf("%v %+v", c.OAuth, []mailsync.Connection{c}),
		logs.String(),
		c.OAuth.ClientSecret.String(),
	}
	for _, out := range outputs {
		if strings.Contains(out, secret) || strings.Contains(out, refresh) || strings.Contains(out, "s3cr3t") {
			t.Errorf("secret printed: %s", out)
		}
	}
	if !strings.Contains(outputs[3], "[REDACTED]") {
		t.Errorf("redaction marker missing: %s", outputs[3])
	}
	// The host stores the configuration: JSON keeps the values.
	raw, _ := json.Marshal(c)
	var back mailsync.Connection
	if err := json.Unmarshal(raw, &back); err != nil || back.OAuth.ClientSecret.Reveal() != secret || back.OAuth.RefreshToken.Reveal() != refresh {
		t.Fatalf("JSON round trip lost the secrets: %v", err)
	}
}
