package registry_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/schemas/pb"
	"github.com/banditstream/banditstream/schemas/registry"
	"github.com/banditstream/banditstream/schemas/registry/registrytest"
)

var (
	interaction = (&pb.Interaction{}).ProtoReflect().Descriptor()
	response    = (&pb.ScoreResponse{}).ProtoReflect().Descriptor()
)

func TestSubjects(t *testing.T) {
	for _, c := range []struct {
		s    registry.Strategy
		want string
	}{
		{registry.TopicName, "events-value"},
		{registry.RecordName, "banditstream.v1.Interaction"},
		{registry.TopicRecordName, "events-banditstream.v1.Interaction"},
	} {
		if got := c.s.Subject("events", interaction.FullName()); got != c.want {
			t.Errorf("%s: %q, want %q", c.s, got, c.want)
		}
		if st, err := registry.ParseStrategy(string(c.s)); err != nil || st != c.s {
			t.Errorf("ParseStrategy(%q) = %q, %v", c.s, st, err)
		}
	}
	if _, err := registry.ParseStrategy("topic_name"); err == nil {
		t.Error("an unknown strategy was accepted")
	}
}

// An id is accepted on a topic only as a version of the topic's subject;
// answers are cached; a refusal says why and is permanent (ErrInvalid), a
// registry away is not.
func TestAccept(t *testing.T) {
	ctx := context.Background()
	srv := registrytest.New(t)
	good := srv.Register("events-value", "PROTOBUF", "syntax = \"proto3\"; message A {}")
	other := srv.Register("requests-value", "PROTOBUF", "syntax = \"proto3\"; message B {}")
	r, err := registry.New(registry.Config{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := r.Accept(ctx, "events", interaction.FullName(), good); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Requests("GET /schemas/ids/"); n != 1 {
		t.Errorf("%d lookups for one id, want 1 (cached)", n)
	}
	err = r.Accept(ctx, "events", interaction.FullName(), other)
	if !errors.Is(err, schemas.ErrInvalid) || !strings.Contains(err.Error(), `not a version of subject "events-value"`) {
		t.Errorf("another subject's id: %v", err)
	}
	err = r.Accept(ctx, "events", interaction.FullName(), 99)
	if !errors.Is(err, schemas.ErrInvalid) || !strings.Contains(err.Error(), "unknown") {
		t.Errorf("an unknown id: %v", err)
	}
	srv.Down.Store(true)
	if err := r.Accept(ctx, "events", interaction.FullName(), good); err != nil {
		t.Errorf("an accepted id needs the registry again: %v", err)
	}
	if err := r.Accept(ctx, "events", interaction.FullName(), 99); !errors.Is(err, schemas.ErrInvalid) || !strings.Contains(err.Error(), "unknown") {
		t.Errorf("a refusal is not kept for a while, with its reason: %v", err)
	}
	err = r.Accept(ctx, "requests", interaction.FullName(), other)
	if !errors.Is(err, registry.ErrUnavailable) || errors.Is(err, schemas.ErrInvalid) {
		t.Errorf("registry down: %v, want ErrUnavailable alone", err)
	}
	srv.Down.Store(false)
	if err := r.Accept(ctx, "requests", interaction.FullName(), other); err != nil {
		t.Errorf("once back: %v", err)
	}
}

// Prefix registers the project's .proto once per subject and frames the
// message with its index in the file.
func TestPrefixRegistersOnce(t *testing.T) {
	ctx := context.Background()
	srv := registrytest.New(t)
	r, err := registry.New(registry.Config{URL: srv.URL + "/", Strategy: registry.TopicRecordName})
	if err != nil {
		t.Fatal(err)
	}
	var p []byte
	for range 3 {
		if p, err = r.Prefix(ctx, "results", response); err != nil {
			t.Fatal(err)
		}
	}
	all := srv.Schemas()
	if len(all) != 1 || all[0].Type != "PROTOBUF" || all[0].Text != schemas.ProtoSource {
		t.Fatalf("registered %+v, want the .proto once", all)
	}
	if _, ok := all[0].Subjects["results-banditstream.v1.ScoreResponse"]; !ok {
		t.Errorf("subjects %v", all[0].Subjects)
	}
	if n := srv.Requests("POST"); n != 1 {
		t.Errorf("%d registrations, want 1", n)
	}
	c, payload, f, err := schemas.Unframe(schemas.Protobuf, append(p, 0x0a, 0x01, 'x'))
	if err != nil || c != schemas.Protobuf || !f.Framed || f.SchemaID != all[0].ID || string(payload) != "\x0a\x01x" {
		t.Errorf("prefix %x: %v %q %+v %v", p, c, payload, f, err)
	}
}

// Credentials go in a header only: never in an error, and a URL holding
// them is refused without repeating the password.
func TestRegistryCredentials(t *testing.T) {
	ctx := context.Background()
	srv := registrytest.New(t)
	srv.User, srv.Password = "svc", "s3cret-registry"
	id := srv.Register("events-value", "JSON", `{"type":"object"}`)
	_, err := registry.New(registry.Config{URL: strings.Replace(srv.URL, "://", "://svc:s3cret-registry@", 1)})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("URL with a password: %v", err)
	}
	wrong, err := registry.New(registry.Config{URL: srv.URL, Username: "svc", Password: "wrong-s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	err = wrong.Accept(ctx, "events", interaction.FullName(), id)
	if !errors.Is(err, registry.ErrUnavailable) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("wrong password: %v, want ErrUnavailable without the password", err)
	}
	right, err := registry.New(registry.Config{URL: srv.URL, Username: "svc", Password: "s3cret-registry"})
	if err != nil {
		t.Fatal(err)
	}
	if err := right.Accept(ctx, "events", interaction.FullName(), id); err != nil {
		t.Error(err)
	}
}
