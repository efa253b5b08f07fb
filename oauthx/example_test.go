package oauthx_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/oauthx"
)

// A host builds a token source from the connection's OAuth block and stores
// rotated refresh tokens in its database.
func ExampleNew() {
	// A stand-in for https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token.
	endpoint := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.PostFormValue("refresh_token") != "refresh-1" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"invalid_grant","error_description":"AADSTS70008: expired"}`)
			return
		}
		fmt.Fprint(w, `{"token_type":"Bearer","access_token":"access-1","expires_in":3600,"refresh_token":"refresh-2"}`)
	}))
	defer endpoint.Close()

	conn := mailsync.Connection{Name: "support", OAuth: &mailsync.OAuth{
		Provider: mailsync.MicrosoftGraph, ClientID: "app-id", ClientSecret: "app-secret",
		TenantID: "contoso.onmicrosoft.com", RefreshToken: "refresh-1",
	}}
	ts, err := oauthx.New(context.Background(), conn.OAuth, oauthx.Options{
		TokenURL:   endpoint.URL + "/token",
		HTTPClient: endpoint.Client(),
		OnRefreshToken: func(ctx context.Context, newToken mailsync.Secret) error {
			conn.OAuth.RefreshToken = newToken // and save conn
			fmt.Println("stored the rotated refresh token:", newToken)
			return nil
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	tok, err := ts.Token()
	if errors.Is(err, mailsync.ErrConsentRequired) {
		fmt.Println("an admin must sign in again")
		return
	}
	fmt.Println(tok.Type(), conn.OAuth.RefreshToken.Reveal() == "refresh-2")
	// Output:
	// stored the rotated refresh token: [REDACTED]
	// Bearer true
}
