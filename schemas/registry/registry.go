// Package registry talks to a schema registry with Confluent's REST API
// (Confluent Schema Registry, Apicurio's compatibility API, Karapace): it
// says which schema ids a topic accepts, and registers the schema the
// pipeline frames its own protobuf outputs with.
//
// A record framed with schema id N is accepted on a topic when the registry
// lists N as a version of the subject the naming strategy gives for that
// topic and the record's message type. Answers are cached: an id accepted
// stays accepted (a registry never rewrites an id), an id refused is asked
// again after RefusalTTL, and both caches are bounded.
package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/banditstream/banditstream/schemas"
)

// Strategy names a subject naming strategy.
type Strategy string

// The subject naming strategies of Confluent's serializers.
const (
	// TopicName: "<topic>-value", one schema per topic (the default).
	TopicName Strategy = "topic"
	// RecordName: the message's full name, "banditstream.v1.Interaction".
	RecordName Strategy = "record"
	// TopicRecordName: "<topic>-<full name>".
	TopicRecordName Strategy = "topic-record"
)

// ParseStrategy reads a strategy's name.
func ParseStrategy(s string) (Strategy, error) {
	switch st := Strategy(s); st {
	case TopicName, RecordName, TopicRecordName:
		return st, nil
	}
	return "", fmt.Errorf("unknown subject naming strategy %q (topic, record or topic-record)", s)
}

// Subject is the subject the strategy gives a topic's values of type name.
func (s Strategy) Subject(topic string, name protoreflect.FullName) string {
	switch s {
	case RecordName:
		return string(name)
	case TopicRecordName:
		return topic + "-" + string(name)
	}
	return topic + "-value"
}

// ErrUnavailable matches an answer the registry could not give now (a
// network error, a server error): retry later.
var ErrUnavailable = errors.New("schema registry unavailable")

// Bounds of the caches.
const (
	maxCachedIDs = 4096
	// RefusalTTL is how long an id refused stays refused without asking.
	RefusalTTL = time.Minute
)

// Config is how to reach a registry.
type Config struct {
	URL      string // base URL, e.g. http://registry:8081
	Username string // basic authentication, if set
	Password string // never logged or put in an error
	Strategy Strategy
	Timeout  time.Duration // per request; 0: 10s
	// HTTP is the client to use; nil: one with Timeout.
	HTTP *http.Client
}

// Registry is a client of one registry. It is safe for concurrent use.
type Registry struct {
	base     string // the URL without a trailing slash
	user     string
	password string
	strategy Strategy
	http     *http.Client

	mu       sync.Mutex
	accepted map[key]bool      // ids accepted per subject
	refused  map[key]refusal   // ids refused per subject, when and why
	prefixes map[string][]byte // frame header per subject written
}

type key struct {
	subject string
	id      uint32
}

type refusal struct {
	at     time.Time
	reason string
}

// New checks cfg and returns a client; it does not contact the registry.
func New(cfg Config) (*Registry, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("schema registry URL: want http(s)://host[:port][/path], got %q", redact(cfg.URL))
	}
	if u.User != nil {
		return nil, errors.New("schema registry URL: put the user name and password in their own settings, not in the URL")
	}
	if cfg.Strategy == "" {
		cfg.Strategy = TopicName
	}
	if _, err := ParseStrategy(string(cfg.Strategy)); err != nil {
		return nil, err
	}
	hc := cfg.HTTP
	if hc == nil {
		t := cfg.Timeout
		if t <= 0 {
			t = 10 * time.Second
		}
		hc = &http.Client{Timeout: t}
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &Registry{base: u.String(), user: cfg.Username, password: cfg.Password, strategy: cfg.Strategy, http: hc,
		accepted: map[key]bool{}, refused: map[key]refusal{}, prefixes: map[string][]byte{}}, nil
}

// redact keeps a URL's user name but not its password out of messages.
func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		u.User = url.User(u.User.Username())
		return u.String()
	}
	if i := strings.LastIndex(raw, "@"); i >= 0 {
		return "…" + raw[i:]
	}
	return raw
}

// Accept returns nil when schema id is a version of the subject of topic's
// values of type name; a schemas.ErrInvalid error saying why not; or an
// ErrUnavailable error when the registry could not answer.
func (r *Registry) Accept(ctx context.Context, topic string, name protoreflect.FullName, id uint32) error {
	subject := r.strategy.Subject(topic, name)
	k := key{subject, id}
	r.mu.Lock()
	ok := r.accepted[k]
	was, wasRefused := r.refused[k]
	r.mu.Unlock()
	if ok {
		return nil
	}
	if wasRefused && time.Since(was.at) < RefusalTTL {
		return &schemas.FieldError{Field: "schema id", Reason: was.reason}
	}
	var versions []struct {
		Subject string `json:"subject"`
		Version int    `json:"version"`
	}
	found, err := r.get(ctx, fmt.Sprintf("/schemas/ids/%d/versions", id), &versions)
	if err != nil {
		return err
	}
	accept := false
	for _, v := range versions {
		accept = accept || v.Subject == subject
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.accepted)+len(r.refused) >= maxCachedIDs {
		clear(r.refused)
		if len(r.accepted) >= maxCachedIDs {
			clear(r.accepted)
		}
	}
	if found && accept {
		delete(r.refused, k)
		r.accepted[k] = true
		return nil
	}
	reason := fmt.Sprintf("schema %d is not a version of subject %q in the schema registry", id, subject)
	if !found {
		reason = fmt.Sprintf("schema %d is unknown to the schema registry", id)
	}
	r.refused[k] = refusal{at: time.Now(), reason: reason}
	return &schemas.FieldError{Field: "schema id", Reason: reason}
}

// Prefix returns the frame header for values of topic of type md: the
// project's .proto registered (or found, if registered already) under the
// topic's subject. Registered once per subject. Its errors are classified
// as Accept's.
func (r *Registry) Prefix(ctx context.Context, topic string, md protoreflect.MessageDescriptor) ([]byte, error) {
	subject := r.strategy.Subject(topic, md.FullName())
	r.mu.Lock()
	p, ok := r.prefixes[subject]
	r.mu.Unlock()
	if ok {
		return p, nil
	}
	body := map[string]any{"schemaType": "PROTOBUF", "schema": schemas.ProtoSource}
	var out struct {
		ID uint32 `json:"id"`
	}
	if err := r.post(ctx, "/subjects/"+url.PathEscape(subject)+"/versions", body, &out); err != nil {
		return nil, err
	}
	p = schemas.AppendFrame(nil, out.ID, md)
	r.mu.Lock()
	if len(r.prefixes) >= maxCachedIDs {
		clear(r.prefixes)
	}
	r.prefixes[subject] = p
	r.mu.Unlock()
	return p, nil
}

// get reads path's JSON into out; found is false on a 404.
func (r *Registry) get(ctx context.Context, path string, out any) (found bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url(path), nil)
	if err != nil {
		return false, err
	}
	status, err := r.do(req, out)
	if status == http.StatusNotFound {
		return false, nil
	}
	return err == nil, err
}

func (r *Registry) post(ctx context.Context, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url(path), bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	_, err = r.do(req, out)
	return err
}

func (r *Registry) url(path string) string { return r.base + path }

// do sends req and decodes a 200's JSON into out. A network error, a 5xx,
// 408, 429, 401 or 403 is ErrUnavailable; another status is a
// schemas.ErrInvalid error with the registry's message: the record's, for
// good.
func (r *Registry) do(req *http.Request, out any) (int, error) {
	req.Header.Set("Accept", "application/vnd.schemaregistry.v1+json, application/json")
	if r.user != "" || r.password != "" {
		req.SetBasicAuth(r.user, r.password)
	}
	what := req.Method + " " + req.URL.Path
	resp, err := r.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is in what already
		}
		return 0, fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		if err := json.Unmarshal(body, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s: unreadable answer: %w", what, err)
		}
		return resp.StatusCode, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout,
		// Credentials refused are the deployment's to fix, not the
		// record's: retried, not dead-lettered.
		resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return resp.StatusCode, fmt.Errorf("%w: %s: %s", ErrUnavailable, what, resp.Status)
	}
	var e struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(body, &e)
	return resp.StatusCode, &schemas.FieldError{Field: "schema", Reason: fmt.Sprintf("schema registry: %s: %s: %.200s", what, resp.Status, e.Message)}
}
