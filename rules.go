package mailsync

import (
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
)

// Routing chooses, per message, among the mappings of the ticket types a
// connection is connected with, and filters mail before it becomes a
// ticket. Pass it to Sync with WithRouting; the mapping given to Sync is the
// default. With no rules and no block list Sync behaves as without it.
// It is JSON-serialisable, so a host stores it beside the connection.
type Routing struct {
	// Mappings are the mappings of the ticket types rules may choose (one
	// per ticket type; each must be in the connection's ConnectedWith). A
	// host may list every type it has: the one of the mapping given to Sync
	// is taken from Sync's argument.
	Mappings []Mapping `json:"mappings,omitempty"`
	// Rules are evaluated in order, before threading. A rule that matches
	// applies its actions and stops the evaluation unless it says Continue.
	Rules []Rule `json:"rules,omitempty"`
	// Blocked senders' mail never becomes a ticket or a follow-up.
	Blocked BlockList `json:"blocked,omitempty"`
}

// Rule is one pre-ticket rule: when every condition holds, its actions apply.
type Rule struct {
	// ID names the rule in outcomes (Outcome.Rules), so an admin sees why a
	// mail went where it did. Required and unique.
	ID string `json:"id"`
	// When lists the conditions; all must hold. An empty list always holds.
	When []Condition `json:"when,omitempty"`
	// TicketType chooses the ticket type (and so the mapping) of a new
	// ticket; it must be in the connection's ConnectedWith.
	TicketType string `json:"ticket_type,omitempty"`
	// Set fills ticket fields with constants, over what the mapping filled.
	Set map[string]string `json:"set,omitempty"`
	// Action is what happens to the mail besides: "" (it goes on to become
	// a ticket or follow-up), drop, quarantine or block.
	Action RuleAction `json:"action,omitempty"`
	// Continue lets the following rules be evaluated after this one
	// matched; by default the first matching rule stops the evaluation. A
	// later TicketType or Set overrides an earlier one.
	Continue bool `json:"continue,omitempty"`
}

// RuleAction is what a rule does with the mail besides choosing a ticket type.
type RuleAction string

// The rule actions.
const (
	// ActionNone lets the mail become a ticket or a follow-up.
	ActionNone RuleAction = ""
	// ActionDrop makes nothing and leaves the mail untouched (recorded as done).
	ActionDrop RuleAction = "drop"
	// ActionQuarantine hands the mail to Sink.Quarantine, raw.
	ActionQuarantine RuleAction = "quarantine"
	// ActionBlock treats the sender as blocked: the block list's action
	// (drop by default), counted in Report.Blocked; Outcome.Blocked names
	// the sender so the host can add it to its list.
	ActionBlock RuleAction = "block"
)

// Condition tests one field of a message. A field with several values (the
// recipients, the attachments) holds when any value matches; Not inverts
// the whole condition.
type Condition struct {
	// Field is one of: from (the sender's address), to, cc, delivered_to,
	// x_original_to, recipient (any of those four), reply_to, subject,
	// body.text, kind (the classification), attachment.name,
	// attachment.type, spam.score (X-Spam-Score, or score= in
	// X-Spam-Status), spam.flag ("yes" or "no", from X-Spam-Flag or
	// X-Spam-Status), folder (the folder the provider read it from), or
	// header:<Name> (any header, decoded).
	Field string `json:"field"`
	// Op is one of: is (equal, ignoring case), contains (ignoring case),
	// matches (an RE2 regular expression: linear time, safe on hostile
	// input), domain (the address's domain is Value or below it), above
	// and below (numbers), exists (the field is present and not empty).
	Op ConditionOp `json:"op"`
	// Value is what the field is compared with (not used by exists).
	Value string `json:"value,omitempty"`
	// Not inverts the condition.
	Not bool `json:"not,omitempty"`
}

// ConditionOp is how a Condition compares.
type ConditionOp string

// The condition operators.
const (
	OpIs       ConditionOp = "is"
	OpContains ConditionOp = "contains"
	OpMatches  ConditionOp = "matches"
	OpDomain   ConditionOp = "domain"
	OpAbove    ConditionOp = "above"
	OpBelow    ConditionOp = "below"
	OpExists   ConditionOp = "exists"
)

// BlockList names senders whose mail never becomes a ticket.
type BlockList struct {
	// Addresses are exact sender addresses (case does not matter).
	Addresses []string `json:"addresses,omitempty"`
	// Domains block every address at the domain or below it.
	Domains []string `json:"domains,omitempty"`
	// Patterns are RE2 regular expressions matched against the lower-case
	// sender address.
	Patterns []string `json:"patterns,omitempty"`
	// Action is drop (the default) or quarantine.
	Action RuleAction `json:"action,omitempty"`
}

// maxPattern bounds a regular expression's length in rules and block lists.
const maxPattern = 1000

var ruleFields = map[string]bool{
	"from": true, "to": true, "cc": true, "delivered_to": true, "x_original_to": true, "recipient": true,
	"reply_to": true, "subject": true, "body.text": true, "kind": true, "attachment.name": true,
	"attachment.type": true, "spam.score": true, "spam.flag": true, "folder": true,
}

// Validate reports every problem of r at once, as a *ConfigError naming the
// fields: unknown fields and operators, bad regular expressions and
// numbers, duplicate rule ids, and ticket types that are not in the
// connection's ConnectedWith or have no mapping (def is Sync's mapping).
func (r Routing) Validate(conn Connection, def Mapping) error {
	var e ConfigError
	mapped := map[string]bool{def.TicketType: true}
	for i, m := range r.Mappings {
		if m.TicketType == def.TicketType {
			continue // Sync's own mapping wins
		}
		at := fmt.Sprintf("routing.mappings[%d]", i)
		if err := m.Validate(); err != nil {
			var ce *ConfigError
			if errors.As(err, &ce) {
				for _, p := range ce.Problems {
					p.Field = at + "." + p.Field
					e.addp(p)
				}
			}
		}
		switch {
		case mapped[m.TicketType]:
			e.add(at+".ticket_type", CodeDuplicate, fmt.Sprintf("%q has two mappings", m.TicketType))
		case !conn.ServesTicketType(m.TicketType):
			e.add(at+".ticket_type", CodeNotFound, fmt.Sprintf("%q is not in the connection's connected_with %q", m.TicketType, conn.ConnectedWith))
		}
		mapped[m.TicketType] = true
	}
	ids := map[string]bool{}
	for i, rule := range r.Rules {
		at := fmt.Sprintf("routing.rules[%d]", i)
		switch {
		case strings.TrimSpace(rule.ID) == "":
			e.add(at+".id", CodeRequired, "is required")
		case ids[rule.ID]:
			e.add(at+".id", CodeDuplicate, fmt.Sprintf("%q is used twice", rule.ID))
		case len(rule.ID) > 128:
			e.addp(Problem{Field: at + ".id", Code: CodeTooLong, Limit: 128, Message: "must be at most 128 characters without control characters"})
		case hasControl(rule.ID):
			e.add(at+".id", CodeForbiddenCharacters, "must be at most 128 characters without control characters")
		}
		ids[rule.ID] = true
		for k, c := range rule.When {
			if p := c.check(); p.Message != "" {
				p.Field = fmt.Sprintf("%s.when[%d]", at, k)
				e.addp(p)
			}
		}
		if t := rule.TicketType; t != "" {
			switch {
			case !conn.ServesTicketType(t):
				e.add(at+".ticket_type", CodeNotFound, fmt.Sprintf("%q is not in the connection's connected_with %q", t, conn.ConnectedWith))
			case !mapped[t]:
				e.add(at+".ticket_type", CodeNotFound, fmt.Sprintf("%q has no mapping in routing.mappings", t))
			}
		}
		for f := range rule.Set {
			switch {
			case strings.TrimSpace(f) == "":
				e.add(at+".set", CodeRequired, fmt.Sprintf("%q is not a ticket field name", f))
			case len(f) > maxTicketFieldName:
				e.addp(Problem{Field: at + ".set", Code: CodeTooLong, Limit: maxTicketFieldName, Message: fmt.Sprintf("%q is not a ticket field name", f)})
			}
		}
		switch rule.Action {
		case ActionNone, ActionDrop, ActionQuarantine, ActionBlock:
		default:
			e.addp(Problem{Field: at + ".action", Code: CodeUnknown, Allowed: []string{string(ActionNone), string(ActionDrop), string(ActionQuarantine), string(ActionBlock)},
				Message: fmt.Sprintf("%q is not one of \"\", drop, quarantine, block", rule.Action)})
		}
	}
	b := r.Blocked
	for i, p := range b.Patterns {
		if len(p) > maxPattern {
			e.addp(Problem{Field: fmt.Sprintf("routing.blocked.patterns[%d]", i), Code: CodeTooLong, Limit: maxPattern, Message: fmt.Sprintf("is longer than %d characters", maxPattern)})
		} else if _, err := regexp.Compile(p); err != nil {
			e.add(fmt.Sprintf("routing.blocked.patterns[%d]", i), CodeInvalid, err.Error())
		}
	}
	for i, a := range b.Addresses {
		if !strings.Contains(a, "@") {
			e.add(fmt.Sprintf("routing.blocked.addresses[%d]", i), CodeInvalid, fmt.Sprintf("%q is not an address", a))
		}
	}
	for i, d := range b.Domains {
		if strings.TrimSpace(d) == "" || strings.ContainsAny(d, "@ ") {
			e.add(fmt.Sprintf("routing.blocked.domains[%d]", i), CodeInvalid, fmt.Sprintf("%q is not a domain", d))
		}
	}
	switch b.Action {
	case ActionNone, ActionDrop, ActionQuarantine:
	default:
		e.addp(Problem{Field: "routing.blocked.action", Code: CodeUnknown, Allowed: []string{string(ActionNone), string(ActionDrop), string(ActionQuarantine)},
			Message: fmt.Sprintf("%q is not drop or quarantine", b.Action)})
	}
	if len(e.Problems) == 0 {
		return nil
	}
	return &e
}

func (c Condition) check() Problem {
	if !ruleFields[c.Field] {
		name, ok := strings.CutPrefix(c.Field, HeaderFieldPrefix)
		if !ok || name == "" || strings.ContainsAny(name, " :\r\n") {
			return Problem{Code: CodeUnknown, Message: fmt.Sprintf("field %q is not one a rule can test", c.Field)}
		}
	}
	switch c.Op {
	case OpIs, OpContains, OpDomain:
	case OpExists:
		return Problem{}
	case OpMatches:
		if len(c.Value) > maxPattern {
			return Problem{Code: CodeTooLong, Limit: maxPattern, Message: fmt.Sprintf("the pattern is longer than %d characters", maxPattern)}
		}
		if _, err := regexp.Compile(c.Value); err != nil {
			return Problem{Code: CodeInvalid, Message: err.Error()}
		}
	case OpAbove, OpBelow:
		if _, err := strconv.ParseFloat(c.Value, 64); err != nil {
			return Problem{Code: CodeInvalid, Message: fmt.Sprintf("%q is not a number", c.Value)}
		}
	default:
		return Problem{Code: CodeUnknown,
			Allowed: []string{string(OpIs), string(OpContains), string(OpMatches), string(OpDomain), string(OpAbove), string(OpBelow), string(OpExists)},
			Message: fmt.Sprintf("op %q is not one of is, contains, matches, domain, above, below, exists", c.Op)}
	}
	if c.Value == "" {
		return Problem{Code: CodeRequired, Message: "needs a value"}
	}
	return Problem{}
}

// router is a validated Routing, ready to evaluate.
type router struct {
	mappings map[string]Mapping
	rules    []compiledRule
	blocked  BlockList
	patterns []*regexp.Regexp
}

type compiledRule struct {
	Rule
	re    []*regexp.Regexp // per condition, for matches
	lit   [][]string       // per condition, literals every match contains (lower case)
	lower []string         // per condition, the value in lower case
	num   []float64        // per condition, the value as a number (above, below)
}

func newRouter(r Routing, def Mapping) *router {
	rt := &router{mappings: map[string]Mapping{def.TicketType: def}, blocked: r.Blocked}
	for _, m := range r.Mappings {
		if m.TicketType != def.TicketType {
			rt.mappings[m.TicketType] = m
		}
	}
	for _, rule := range r.Rules {
		cr := compiledRule{Rule: rule, re: make([]*regexp.Regexp, len(rule.When)),
			lit: make([][]string, len(rule.When)), lower: make([]string, len(rule.When)), num: make([]float64, len(rule.When))}
		for i, c := range rule.When {
			cr.lower[i] = strings.ToLower(strings.TrimSpace(c.Value))
			switch c.Op {
			case OpMatches:
				cr.re[i] = regexp.MustCompile(c.Value) // validated
				cr.lit[i] = requiredLiterals(c.Value)
			case OpAbove, OpBelow:
				cr.num[i], _ = strconv.ParseFloat(c.Value, 64) // validated
			}
		}
		rt.rules = append(rt.rules, cr)
	}
	for _, p := range r.Blocked.Patterns {
		rt.patterns = append(rt.patterns, regexp.MustCompile(p))
	}
	return rt
}

// requiredLiterals returns, in lower case, the ASCII literals that every
// match of pattern contains (the literal pieces of its top-level sequence):
// a cheap test that spares running the expression on most values, which
// Go's regexp does slowly next to a substring search.
func requiredLiterals(pattern string) []string {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil
	}
	re = re.Simplify()
	for re.Op == syntax.OpCapture && len(re.Sub) == 1 {
		re = re.Sub[0]
	}
	var out []string
	consider := func(r *syntax.Regexp) {
		if r.Op != syntax.OpLiteral || len(r.Rune) < 2 {
			return
		}
		lit := string(r.Rune)
		if isASCII(lit) {
			out = append(out, strings.ToLower(lit))
		}
	}
	switch re.Op {
	case syntax.OpLiteral:
		consider(re)
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			consider(sub)
		}
	}
	return out
}

// mayMatch reports whether a value (lower case) contains every literal.
func mayMatch(lower string, lits []string) bool {
	for _, l := range lits {
		if !strings.Contains(lower, l) {
			return false
		}
	}
	return true
}

// routed is what the rules decided for one message.
type routed struct {
	mapping Mapping
	set     map[string]string
	action  RuleAction // drop, quarantine, block, or none
	rules   []string   // ids of the rules that matched, in order
	blocked bool       // the block list (or a block rule) matched
}

// route evaluates the block list and the rules for msg.
func (rt *router) route(msg *Message, class Classification, ref MessageRef, def Mapping) routed {
	out := routed{mapping: def}
	if rt.isBlocked(msg.From.Address) {
		out.blocked, out.action = true, rt.blockAction()
		return out
	}
	fields := &ruleFieldCache{msg: msg, class: class, ref: ref}
	for _, r := range rt.rules {
		if !r.matches(fields) {
			continue
		}
		out.rules = append(out.rules, r.ID)
		if r.TicketType != "" {
			out.mapping = rt.mappings[r.TicketType]
		}
		for k, v := range r.Set {
			if out.set == nil {
				out.set = map[string]string{}
			}
			out.set[k] = v
		}
		switch r.Action {
		case ActionBlock:
			out.blocked, out.action = true, rt.blockAction()
			return out
		case ActionDrop, ActionQuarantine:
			out.action = r.Action
			return out
		}
		if !r.Continue {
			break
		}
	}
	return out
}

func (rt *router) blockAction() RuleAction {
	if rt.blocked.Action == ActionQuarantine {
		return ActionQuarantine
	}
	return ActionDrop
}

func (rt *router) isBlocked(sender string) bool {
	sender = strings.ToLower(strings.TrimSpace(sender))
	if sender == "" {
		return false
	}
	for _, a := range rt.blocked.Addresses {
		if strings.EqualFold(a, sender) {
			return true
		}
	}
	for _, d := range rt.blocked.Domains {
		if inDomain(sender, d) {
			return true
		}
	}
	for _, re := range rt.patterns {
		if re.MatchString(sender) {
			return true
		}
	}
	return false
}

// inDomain reports whether address is at domain or below it.
func inDomain(address, domain string) bool {
	_, host, ok := strings.Cut(address, "@")
	if !ok {
		host = address
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	domain = strings.TrimPrefix(strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), "."), "@")
	return host == domain || strings.HasSuffix(host, "."+domain)
}

// ruleFieldCache reads each rule field of one message once, in its raw
// and lower-case forms, however many rules test it.
type ruleFieldCache struct {
	msg   *Message
	class Classification
	ref   MessageRef
	raw   map[string][]string
	lower map[string][]string
}

func (f *ruleFieldCache) values(field string) []string {
	if v, ok := f.raw[field]; ok {
		return v
	}
	if f.raw == nil {
		f.raw = map[string][]string{}
	}
	v := ruleValues(f.msg, f.class, f.ref, field)
	f.raw[field] = v
	return v
}

func (f *ruleFieldCache) lowered(field string) []string {
	if v, ok := f.lower[field]; ok {
		return v
	}
	if f.lower == nil {
		f.lower = map[string][]string{}
	}
	raw := f.values(field)
	v := make([]string, len(raw))
	for i, s := range raw {
		v[i] = strings.ToLower(strings.TrimSpace(s))
	}
	f.lower[field] = v
	return v
}

func (r compiledRule) matches(f *ruleFieldCache) bool {
	for i, c := range r.When {
		if r.holds(i, f) == c.Not {
			return false
		}
	}
	return true
}

// holds evaluates condition i of r on the message.
func (r compiledRule) holds(i int, f *ruleFieldCache) bool {
	c := r.When[i]
	switch c.Op {
	case OpExists:
		for _, v := range f.values(c.Field) {
			if v != "" {
				return true
			}
		}
	case OpIs:
		for _, v := range f.lowered(c.Field) {
			if v == r.lower[i] {
				return true
			}
		}
	case OpContains:
		for _, v := range f.lowered(c.Field) {
			if strings.Contains(v, r.lower[i]) {
				return true
			}
		}
	case OpMatches:
		low := f.lowered(c.Field)
		for k, v := range f.values(c.Field) {
			// The literal test is sound on lower-cased values: the one
			// rune that case-folds to an ASCII letter but does not
			// lower-case to it is U+017F (ſ, folds to s); skip the test
			// there. (U+212A, the Kelvin sign, lower-cases to k.)
			if len(r.lit[i]) > 0 && !strings.ContainsRune(v, 'ſ') && !mayMatch(low[k], r.lit[i]) {
				continue
			}
			if r.re[i].MatchString(v) {
				return true
			}
		}
	case OpDomain:
		for _, v := range f.lowered(c.Field) {
			if inDomain(v, r.lower[i]) {
				return true
			}
		}
	case OpAbove, OpBelow:
		for _, v := range f.values(c.Field) {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil && ((c.Op == OpAbove && n > r.num[i]) || (c.Op == OpBelow && n < r.num[i])) {
				return true
			}
		}
	}
	return false
}

// ruleValues returns the values of a rule field in msg.
func ruleValues(msg *Message, class Classification, ref MessageRef, field string) []string {
	addrs := func(list []Address) []string {
		out := make([]string, 0, len(list))
		for _, a := range list {
			out = append(out, a.Address)
		}
		return out
	}
	header := func(name string) []string {
		var out []string
		for _, v := range msg.Header.Values(name) {
			if list, err := mail.ParseAddressList(v); err == nil {
				for _, a := range list {
					out = append(out, a.Address)
				}
			} else {
				out = append(out, strings.Trim(strings.TrimSpace(v), "<>"))
			}
		}
		return out
	}
	switch field {
	case "from":
		return []string{msg.From.Address}
	case "to":
		return addrs(msg.To)
	case "cc":
		return addrs(msg.Cc)
	case "reply_to":
		return addrs(msg.ReplyTo)
	case "delivered_to":
		return header("Delivered-To")
	case "x_original_to":
		return header("X-Original-To")
	case "recipient":
		out := append(addrs(msg.To), addrs(msg.Cc)...)
		out = append(out, header("Delivered-To")...)
		return append(out, header("X-Original-To")...)
	case "subject":
		return []string{msg.Subject}
	case "body.text":
		return []string{msg.Text}
	case "kind":
		return []string{string(class.Kind)}
	case "attachment.name", "attachment.type":
		out := make([]string, 0, len(msg.Attachments))
		for _, a := range msg.Attachments {
			if field == "attachment.name" {
				out = append(out, a.Filename)
			} else {
				out = append(out, a.ContentType)
			}
		}
		return out
	case "spam.score":
		if v := strings.TrimSpace(msg.Header.Get("X-Spam-Score")); v != "" {
			return []string{v}
		}
		if m := spamScore.FindStringSubmatch(msg.Header.Get("X-Spam-Status")); m != nil {
			return []string{m[1]}
		}
		return nil
	case "spam.flag":
		v := strings.ToLower(strings.TrimSpace(msg.Header.Get("X-Spam-Flag")))
		if v == "" {
			v = strings.ToLower(strings.TrimSpace(msg.Header.Get("X-Spam-Status")))
			v, _, _ = strings.Cut(v, ",")
		}
		if v == "" {
			return nil
		}
		return []string{strings.TrimSpace(v)}
	case "folder":
		return []string{ref.Folder}
	}
	if name, ok := strings.CutPrefix(field, HeaderFieldPrefix); ok {
		return msg.Header.Values(name)
	}
	return nil
}

// spamScore finds SpamAssassin's score in X-Spam-Status ("Yes, score=7.3 required=5.0 …").
var spamScore = regexp.MustCompile(`(?i)\b(?:score|hits)=(-?[0-9]+(?:\.[0-9]+)?)`)

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
