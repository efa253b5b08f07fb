package fakegraph

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Change notifications (webhooks), following the documented v1.0 shapes:
//
//	POST   /v1.0/subscriptions        {changeType, notificationUrl, lifecycleNotificationUrl, resource, expirationDateTime, clientState}
//	GET    /v1.0/subscriptions[/{id}]
//	PATCH  /v1.0/subscriptions/{id}   {"expirationDateTime": …}
//	POST   /v1.0/subscriptions/{id}/reauthorize
//	DELETE /v1.0/subscriptions/{id}
//
// Creating a subscription first validates notificationUrl (and
// lifecycleNotificationUrl): the fake POSTs to it with
// ?validationToken=… (Content-Type text/plain) and requires a 200 answer
// whose body is the token, within 10 seconds; otherwise the create fails
// 400 ValidationError, as on the service. The URLs keep their path and
// query byte for byte, in the handshake (the token is appended to the
// query) and in every notification, as Graph documents. The resource
// must be a message collection of the fake's user: users/{u}/messages,
// me/messages, users/{u}/mailFolders('{f}')/messages or
// …/mailFolders/{f}/messages.
// expirationDateTime must lie in the future and at most
// MaxMessageSubscriptionLifetime ahead; clientState is at most 128
// characters. An expired subscription is gone (404 on PATCH).
//
// Each message change in a subscribed folder (created: Deliver or a move
// in; updated: a flag change or Touch; deleted: Remove or a move out)
// whose kind is in the subscription's changeType is delivered as a
// changeNotificationCollection to notificationUrl, asynchronously (the
// fake never holds its lock while it delivers). SendLifecycle sends
// lifecycle notifications; DuplicateNotifications makes every delivery
// repeat, as Graph's at-least-once delivery may. The fake does not
// enforce https for the notification URLs (the service does).

// MaxMessageSubscriptionLifetime is the longest lifetime Graph accepts for
// a subscription on Outlook messages: 10080 minutes (under 7 days).
const MaxMessageSubscriptionLifetime = 10080 * time.Minute

// TenantID is the tenantId the fake puts in notifications.
const TenantID = "84bd8158-6d4d-4958-8b9f-9d6445542f95"

type subscription struct {
	ID                       string
	ChangeType               string
	NotificationURL          string
	LifecycleNotificationURL string
	Resource                 string
	ClientState              string
	Expiration               time.Time
	folderID                 string // "" for the whole mailbox
}

// Subscription is what Subscriptions reports of one subscription.
type Subscription struct {
	ID, ChangeType, NotificationURL, LifecycleNotificationURL, Resource, ClientState string
	Expiration                                                                       time.Time
}

// Delivery is one POST the fake made to a notification URL.
type Delivery struct {
	URL       string
	Body      []byte
	Status    int // 0: no answer
	Lifecycle string
}

type webhooks struct {
	subs    map[string]*subscription
	client  *http.Client
	dup     int
	wg      sync.WaitGroup
	log     []Delivery
	created int
}

// SetWebhookClient sets the client the fake uses to validate and call
// notification URLs (default: a client with a 10 s timeout that accepts
// the test servers' certificates).
func (s *Server) SetWebhookClient(c *http.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks.client = c
}

// DuplicateNotifications makes every change notification be delivered n
// times (n <= 1: once).
func (s *Server) DuplicateNotifications(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks.dup = n
}

// Subscriptions returns the active (unexpired) subscriptions.
func (s *Server) Subscriptions() []Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireSubsLocked()
	var out []Subscription
	for _, x := range s.hooks.subs {
		out = append(out, Subscription{ID: x.ID, ChangeType: x.ChangeType, NotificationURL: x.NotificationURL,
			LifecycleNotificationURL: x.LifecycleNotificationURL, Resource: x.Resource, ClientState: x.ClientState, Expiration: x.Expiration})
	}
	return out
}

// Deliveries returns the POSTs made to notification URLs so far
// (validation requests excluded).
func (s *Server) Deliveries() []Delivery {
	s.WaitDeliveries()
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Delivery(nil), s.hooks.log...)
}

// WaitDeliveries waits until every notification sent so far was answered.
func (s *Server) WaitDeliveries() { s.hooks.wg.Wait() }

// SendLifecycle sends the lifecycle notification event
// ("reauthorizationRequired", "subscriptionRemoved", "missed") of the
// subscription id to its lifecycleNotificationUrl (its notificationUrl
// when it has none). subscriptionRemoved also removes the subscription,
// as the service does. It reports whether there is such a subscription.
func (s *Server) SendLifecycle(id, event string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireSubsLocked()
	x := s.hooks.subs[id]
	if x == nil {
		return false
	}
	if event == "subscriptionRemoved" {
		delete(s.hooks.subs, id)
	}
	to := x.LifecycleNotificationURL
	if to == "" {
		to = x.NotificationURL
	}
	body, _ := json.Marshal(map[string]any{"value": []any{map[string]any{
		"subscriptionId": x.ID, "subscriptionExpirationDateTime": x.Expiration.Format(time.RFC3339Nano),
		"tenantId": TenantID, "clientState": x.ClientState, "lifecycleEvent": event}}})
	s.postLocked(to, body, event)
	return true
}

// SendRaw posts body to url as Graph posts a notification (Content-Type
// application/json), for tests of forged or malformed notifications.
func (s *Server) SendRaw(url string, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.postLocked(url, body, "raw")
}

// ExpireSubscription moves the expiry of the subscription id into the
// past, so it is gone. It reports whether there was such a subscription.
func (s *Server) ExpireSubscription(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.hooks.subs[id]
	if x != nil {
		x.Expiration = time.Now().Add(-time.Second)
	}
	return x != nil
}

func (s *Server) webhookClientLocked() *http.Client {
	if s.hooks.client == nil {
		c := s.Server.Client() // trusts the test servers' certificate
		s.hooks.client = &http.Client{Transport: c.Transport, Timeout: 10 * time.Second}
	}
	return s.hooks.client
}

// postLocked sends one notification asynchronously.
func (s *Server) postLocked(to string, body []byte, lifecycle string) {
	client := s.webhookClientLocked()
	s.hooks.wg.Add(1)
	go func() {
		defer s.hooks.wg.Done()
		d := Delivery{URL: to, Body: body, Lifecycle: lifecycle}
		req, err := http.NewRequest(http.MethodPost, to, bytes.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/json; charset=utf-8")
			var resp *http.Response
			if resp, err = client.Do(req); err == nil {
				io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
				resp.Body.Close()
				d.Status = resp.StatusCode
			}
		}
		s.mu.Lock()
		s.hooks.log = append(s.hooks.log, d)
		s.mu.Unlock()
	}()
}

func (s *Server) expireSubsLocked() {
	now := time.Now()
	for id, x := range s.hooks.subs {
		if !x.Expiration.After(now) {
			delete(s.hooks.subs, id)
		}
	}
}

// notifyLocked delivers a change of message msgID in folderID to every
// subscription that covers it.
func (s *Server) notifyLocked(folderID, msgID, change string) {
	s.expireSubsLocked()
	for _, x := range s.hooks.subs {
		if x.folderID != "" && x.folderID != folderID {
			continue
		}
		if !strings.Contains(","+strings.ReplaceAll(x.ChangeType, " ", "")+",", ","+change+",") {
			continue
		}
		res := fmt.Sprintf("Users/%s/Messages/%s", s.User, msgID)
		body, _ := json.Marshal(map[string]any{"value": []any{map[string]any{
			"subscriptionId": x.ID, "subscriptionExpirationDateTime": x.Expiration.Format(time.RFC3339Nano),
			"changeType": change, "resource": res, "clientState": x.ClientState, "tenantId": TenantID,
			"resourceData": map[string]any{"@odata.type": "#Microsoft.Graph.Message", "@odata.id": res,
				"@odata.etag": fmt.Sprintf(`W/"CQAAABYAAAA%d"`, s.seq), "id": msgID}}}})
		for i := 0; i < max(s.hooks.dup, 1); i++ {
			s.postLocked(x.NotificationURL, body, "")
		}
	}
}

// changeKind tells a created from an updated change of a message in a
// folder: created when it had no earlier event there or the last one
// removed it. Called before the event is appended.
func (s *Server) changeKind(folderID, msgID string, removed bool) string {
	if removed {
		return "deleted"
	}
	for i := len(s.events) - 1; i >= 0; i-- {
		e := s.events[i]
		if e.folderID == folderID && e.msgID == msgID {
			if e.removed {
				return "created"
			}
			return "updated"
		}
	}
	return "created"
}

func subJSON(x *subscription) map[string]any {
	return map[string]any{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
		"id": x.ID, "resource": x.Resource, "applicationId": "24d3b144-21ae-4080-943f-7067b395b913",
		"changeType": x.ChangeType, "clientState": nullable(x.ClientState), "notificationUrl": x.NotificationURL,
		"lifecycleNotificationUrl": nullable(x.LifecycleNotificationURL), "expirationDateTime": x.Expiration.UTC().Format("2006-01-02T15:04:05.0000000Z"),
		"creatorId": "8ee44408-0679-472c-bc2a-692812af3437", "includeResourceData": false, "latestSupportedTlsVersion": "v1_2",
		"encryptionCertificate": nil, "encryptionCertificateId": nil, "notificationUrlAppId": nil}
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// validateURL performs the validation handshake with a notification URL.
func validateURL(client *http.Client, to string) error {
	b := make([]byte, 16)
	rand.Read(b)
	token := "Validation: Testing client application reachability for subscription Request-Id: " + hex.EncodeToString(b)
	u, err := url.Parse(to)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("invalid notification url")
	}
	// Graph posts to the URL as given, its path and query untouched, with
	// validationToken added to the query.
	if u.RawQuery != "" {
		u.RawQuery += "&"
	}
	u.RawQuery += "validationToken=" + url.QueryEscape(token)
	req, _ := http.NewRequest(http.MethodPost, u.String(), nil)
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	c := *client
	c.Timeout = 10 * time.Second
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != 200 {
		//lint:ignore ST1005 Graph's own message, as the fake returns it
		return errors.New("Notification endpoint must respond with 200 OK to validation request.")
	}
	if !strings.HasPrefix(strings.ToLower(resp.Header.Get("Content-Type")), "text/plain") || string(got) != token {
		//lint:ignore ST1005 Graph's own message, as the fake returns it
		return errors.New("Validation token in response does not match the one in the validation request.")
	}
	return nil
}

// routeSubscriptions serves /v1.0/subscriptions…; rest follows "subscriptions".
func (s *Server) routeSubscriptions(w http.ResponseWriter, r *http.Request, rest []string, body []byte) {
	switch {
	case len(rest) == 0 && r.Method == http.MethodPost:
		s.createSubscription(w, body)
	case len(rest) == 0 && r.Method == http.MethodGet:
		s.mu.Lock()
		defer s.mu.Unlock()
		s.expireSubsLocked()
		vals := []any{}
		for _, x := range s.hooks.subs {
			vals = append(vals, subJSON(x))
		}
		writeJSON(w, 200, map[string]any{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions", "value": vals})
	case len(rest) >= 1:
		s.mu.Lock()
		defer s.mu.Unlock()
		s.expireSubsLocked()
		x := s.hooks.subs[rest[0]]
		if x == nil {
			graphError(w, 404, "ResourceNotFound", "The object was not found.")
			return
		}
		switch {
		case len(rest) == 1 && r.Method == http.MethodGet:
			writeJSON(w, 200, subJSON(x))
		case len(rest) == 1 && r.Method == http.MethodDelete:
			delete(s.hooks.subs, x.ID)
			w.WriteHeader(204)
		case len(rest) == 1 && r.Method == http.MethodPatch:
			var in struct {
				Expiration *time.Time `json:"expirationDateTime"`
			}
			if err := json.Unmarshal(body, &in); err != nil || in.Expiration == nil {
				graphError(w, 400, "InvalidRequest", "expirationDateTime is required")
				return
			}
			if msg := checkExpiry(*in.Expiration); msg != "" {
				graphError(w, 400, "InvalidRequest", msg)
				return
			}
			x.Expiration = *in.Expiration
			writeJSON(w, 200, subJSON(x))
		case len(rest) == 2 && rest[1] == "reauthorize" && r.Method == http.MethodPost:
			w.WriteHeader(204)
		default:
			graphError(w, 405, "Request_BadRequest", "Unsupported method or path.")
		}
	default:
		graphError(w, 405, "Request_BadRequest", "Unsupported method or path.")
	}
}

func checkExpiry(t time.Time) string {
	now := time.Now()
	if !t.After(now) {
		return "Subscription expiration must be in the future."
	}
	if t.After(now.Add(MaxMessageSubscriptionLifetime)) {
		return fmt.Sprintf("Subscription expiration can only be %d minutes in the future.", int(MaxMessageSubscriptionLifetime/time.Minute))
	}
	return ""
}

func (s *Server) createSubscription(w http.ResponseWriter, body []byte) {
	var in struct {
		ChangeType, NotificationURL, LifecycleNotificationURL, Resource, ClientState string
		Expiration                                                                   *time.Time `json:"expirationDateTime"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		graphError(w, 400, "BadRequest", "Invalid JSON: "+err.Error())
		return
	}
	for _, ct := range strings.Split(in.ChangeType, ",") {
		switch strings.TrimSpace(ct) {
		case "created", "updated", "deleted":
		default:
			graphError(w, 400, "InvalidRequest", "Invalid changeType '"+ct+"'.")
			return
		}
	}
	if in.NotificationURL == "" || in.Resource == "" || in.Expiration == nil {
		graphError(w, 400, "InvalidRequest", "notificationUrl, resource and expirationDateTime are required.")
		return
	}
	if len(in.ClientState) > 128 {
		graphError(w, 400, "InvalidRequest", "clientState must be at most 128 characters.")
		return
	}
	if msg := checkExpiry(*in.Expiration); msg != "" {
		graphError(w, 400, "InvalidRequest", msg)
		return
	}
	s.mu.Lock()
	folderID, ok := s.subscribedFolderLocked(in.Resource)
	client := s.webhookClientLocked()
	s.mu.Unlock()
	if !ok {
		graphError(w, 400, "ExtensionError", "Operation: Create; Exception: [Status Code: BadRequest; Reason: The resource '"+in.Resource+"' is not supported.]")
		return
	}
	// The handshake runs without the lock: the endpoint may call back.
	for _, u := range []string{in.NotificationURL, in.LifecycleNotificationURL} {
		if u == "" {
			continue
		}
		if err := validateURL(client, u); err != nil {
			graphError(w, 400, "ValidationError", "Subscription validation request failed. "+err.Error())
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hooks.subs == nil {
		s.hooks.subs = map[string]*subscription{}
	}
	s.hooks.created++
	b := make([]byte, 4)
	rand.Read(b)
	x := &subscription{ID: fmt.Sprintf("7f105c7d-2dc5-4530-97cd-%04x%s", s.hooks.created, hex.EncodeToString(b)),
		ChangeType: in.ChangeType, NotificationURL: in.NotificationURL, LifecycleNotificationURL: in.LifecycleNotificationURL,
		Resource: in.Resource, ClientState: in.ClientState, Expiration: *in.Expiration, folderID: folderID}
	s.hooks.subs[x.ID] = x
	writeJSON(w, 201, subJSON(x))
}

// subscribedFolderLocked parses a message-collection resource of the
// fake's user; folderID is "" for the whole mailbox.
func (s *Server) subscribedFolderLocked(resource string) (folderID string, ok bool) {
	seg := segments("/" + strings.Trim(resource, "/"))
	switch {
	case len(seg) >= 1 && strings.EqualFold(seg[0], "me"):
		seg = seg[1:]
	case len(seg) >= 2 && strings.EqualFold(seg[0], "users") && strings.EqualFold(seg[1], s.User):
		seg = seg[2:]
	default:
		return "", false
	}
	switch {
	case len(seg) == 1 && strings.EqualFold(seg[0], "messages"):
		return "", true
	case len(seg) == 3 && strings.EqualFold(seg[0], "mailFolders") && strings.EqualFold(seg[2], "messages"):
		f := s.folderLocked(seg[1])
		if f == nil {
			return "", false
		}
		return f.ID, true
	}
	return "", false
}

// Close waits for the notifications in flight, then shuts the server down.
func (s *Server) Close() {
	s.hooks.wg.Wait()
	s.Server.Close()
}
