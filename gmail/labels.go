package gmail

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	gmailapi "google.golang.org/api/gmail/v1"

	"github.com/mailsync/mailsync"
)

// label is a label's id and the name it was configured by.
type label struct {
	Name string
	ID   string
}

// loadLabels fetches the mailbox's labels with labels.list (once per
// connector unless fresh is set).
func (c *Connector) loadLabels(ctx context.Context, fresh bool) ([]*gmailapi.Label, error) {
	if c.allLabels != nil && !fresh {
		return c.allLabels, nil
	}
	var res *gmailapi.ListLabelsResponse
	err := c.api.do(ctx, "labels.list", func(ctx context.Context) (err error) {
		res, err = c.api.svc.Users.Labels.List(c.cfg.user).Context(ctx).Do()
		return err
	})
	if err != nil {
		return nil, err
	}
	all := make([]*gmailapi.Label, 0, len(res.Labels))
	for _, l := range res.Labels {
		if l != nil && l.Id != "" {
			all = append(all, l)
		}
	}
	c.allLabels = all
	return all, nil
}

// findLabel matches name against the labels: exact name, then id, then
// name ignoring case (Gmail refuses names differing only in case).
func findLabel(all []*gmailapi.Label, name string) (*gmailapi.Label, bool) {
	for _, l := range all {
		if l.Name == name {
			return l, true
		}
	}
	for _, l := range all {
		if l.Id == name {
			return l, true
		}
	}
	for _, l := range all {
		if strings.EqualFold(l.Name, name) {
			return l, true
		}
	}
	return nil, false
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
		out = append(out, label{Name: name, ID: l.Id})
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
		c.targets[name] = l.Id
		return l.Id, nil
	}
	var created *gmailapi.Label
	err = c.api.do(ctx, "labels.create", func(ctx context.Context) (err error) {
		created, err = c.api.svc.Users.Labels.Create(c.cfg.user, &gmailapi.Label{
			Name: name, LabelListVisibility: "labelShow", MessageListVisibility: "show",
		}).Context(ctx).Do()
		return err
	})
	switch {
	case err == nil && created.Id != "":
		c.cfg.log.InfoContext(ctx, "gmail: created label", "label", name, "id", created.Id)
		c.allLabels = append(c.allLabels, created)
		c.targets[name] = created.Id
		return created.Id, nil
	case err == nil:
		return "", fmt.Errorf("gmail: labels.create %q: answer without id", name)
	case isStatus(err, http.StatusConflict):
		// Created meanwhile by someone else: look again.
		all, lerr := c.loadLabels(ctx, true)
		if lerr != nil {
			return "", lerr
		}
		if l, ok := findLabel(all, name); ok {
			c.targets[name] = l.Id
			return l.Id, nil
		}
	case isStatus(err, http.StatusBadRequest):
		return "", fmt.Errorf("gmail: cannot create label %q (%w): %w", name, err, mailsync.ErrFolderNotFound)
	}
	return "", err
}

// getLabel returns label id with its counts (labels.get).
func (c *Connector) getLabel(ctx context.Context, id string) (*gmailapi.Label, error) {
	var l *gmailapi.Label
	err := c.api.do(ctx, "labels.get", func(ctx context.Context) (err error) {
		l, err = c.api.svc.Users.Labels.Get(c.cfg.user, id).Context(ctx).Do()
		return err
	})
	return l, err
}

// labelExists reports whether label id exists (labels.get).
func (c *Connector) labelExists(ctx context.Context, id string) (bool, error) {
	_, err := c.getLabel(ctx, id)
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
