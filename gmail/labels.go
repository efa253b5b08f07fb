package gmail

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/mailsync/mailsync"
)

// label is a label's id and the name it was configured by.
type label struct {
	Name string
	ID   string
}

type labelJSON struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	Type           string `json:"type,omitempty"`
	MessagesTotal  int    `json:"messagesTotal,omitempty"`
	MessagesUnread int    `json:"messagesUnread,omitempty"`
}

// loadLabels fetches the mailbox's labels (once per connector unless
// fresh is set).
func (c *Connector) loadLabels(ctx context.Context, fresh bool) ([]labelJSON, error) {
	if c.allLabels != nil && !fresh {
		return c.allLabels, nil
	}
	var out struct {
		Labels []labelJSON `json:"labels"`
	}
	if err := c.api.call(ctx, "labels.list", http.MethodGet, "labels", nil, nil, &out); err != nil {
		return nil, err
	}
	if out.Labels == nil {
		out.Labels = []labelJSON{}
	}
	c.allLabels = out.Labels
	return out.Labels, nil
}

// findLabel matches name against the labels: exact name, then id, then
// name ignoring case (Gmail refuses names differing only in case).
func findLabel(all []labelJSON, name string) (labelJSON, bool) {
	for _, l := range all {
		if l.Name == name {
			return l, true
		}
	}
	for _, l := range all {
		if l.ID == name {
			return l, true
		}
	}
	for _, l := range all {
		if strings.EqualFold(l.Name, name) {
			return l, true
		}
	}
	return labelJSON{}, false
}

// resolve maps the configured label names to ids. System labels need no
// request; any other name costs one labels.list per connector (or per
// call with fresh).
func (c *Connector) resolve(ctx context.Context, fresh bool) ([]label, error) {
	out := make([]label, 0, len(c.cfg.labels))
	for _, name := range c.cfg.labels {
		if id, ok := systemLabel(name); ok {
			out = append(out, label{Name: name, ID: id})
			continue
		}
		all, err := c.loadLabels(ctx, fresh)
		if err != nil {
			return nil, err
		}
		fresh = false
		l, ok := findLabel(all, name)
		if !ok {
			return nil, fmt.Errorf("gmail: %s: label %q: %w", c.cfg.conn.Name, name, mailsync.ErrFolderNotFound)
		}
		out = append(out, label{Name: name, ID: l.ID})
	}
	return out, nil
}

// targetLabel returns the id of the label named name, creating it when it
// does not exist (the destination of MoveToFolder).
func (c *Connector) targetLabel(ctx context.Context, name string) (string, error) {
	name = strings.TrimSpace(name)
	if id, ok := systemLabel(name); ok {
		return id, nil
	}
	if id, ok := c.targets[name]; ok {
		return id, nil
	}
	all, err := c.loadLabels(ctx, false)
	if err != nil {
		return "", err
	}
	if l, ok := findLabel(all, name); ok {
		c.targets[name] = l.ID
		return l.ID, nil
	}
	var created labelJSON
	err = c.api.call(ctx, "labels.create", http.MethodPost, "labels", nil, map[string]string{
		"name": name, "labelListVisibility": "labelShow", "messageListVisibility": "show",
	}, &created)
	switch {
	case err == nil && created.ID != "":
		c.cfg.log.InfoContext(ctx, "gmail: created label", "label", name, "id", created.ID)
		c.allLabels = append(c.allLabels, created)
		c.targets[name] = created.ID
		return created.ID, nil
	case err == nil:
		return "", fmt.Errorf("gmail: labels.create %q: answer without id", name)
	case isStatus(err, http.StatusConflict):
		// Created meanwhile by someone else: look again.
		all, lerr := c.loadLabels(ctx, true)
		if lerr != nil {
			return "", lerr
		}
		if l, ok := findLabel(all, name); ok {
			c.targets[name] = l.ID
			return l.ID, nil
		}
	case isStatus(err, http.StatusBadRequest):
		return "", fmt.Errorf("gmail: cannot create label %q (%w): %w", name, err, mailsync.ErrFolderNotFound)
	}
	return "", err
}

// labelExists reports whether label id exists (labels.get).
func (c *Connector) labelExists(ctx context.Context, id string) (bool, error) {
	err := c.api.call(ctx, "labels.get", http.MethodGet, "labels/"+url.PathEscape(id), nil, nil, nil)
	if isNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// forgetTarget drops a cached target label id, e.g. after the label was
// deleted.
func (c *Connector) forgetTarget(id string) {
	for k, v := range c.targets {
		if v == id {
			delete(c.targets, k)
		}
	}
	c.allLabels = nil
}
