package config

import (
	"flag"
	"time"

	"github.com/banditstream/banditstream/consumers"
	"github.com/banditstream/banditstream/schemas/registry"
)

// SchemaRegistry is how to reach a schema registry; without a URL there
// is none: framed records are read without checking their schema ids, and
// outputs are not framed.
type SchemaRegistry struct {
	URL          string
	Subjects     string
	Username     string
	Password     string // never logged or put in an error
	PasswordFile string
	Timeout      time.Duration
}

// Register defines the schema registry flags on fs. framesOutputs says
// whether the binary writes protobuf values it would frame.
func (r *SchemaRegistry) Register(fs *flag.FlagSet, framesOutputs bool) {
	what := "schema registry URL (Confluent's REST API: Confluent, Apicurio, Karapace); framed records are then accepted only with a schema id the registry lists for their topic's subject"
	if framesOutputs {
		what += ", and protobuf outputs are framed with the id of the registered .proto"
	}
	fs.StringVar(&r.URL, "schema-registry", "", what+" (empty: framed records are read unchecked, outputs unframed)")
	fs.StringVar(&r.Subjects, "schema-registry-subjects", string(registry.TopicName), "subject naming strategy: topic (<topic>-value), record (the message's full name) or topic-record (<topic>-<full name>)")
	fs.StringVar(&r.Username, "schema-registry-username", "", "schema registry user name (basic authentication)")
	fs.StringVar(&r.Password, "schema-registry-password", "", "schema registry password (prefer the environment variable or -schema-registry-password-file)")
	fs.StringVar(&r.PasswordFile, "schema-registry-password-file", "", "file holding the schema registry password")
	fs.DurationVar(&r.Timeout, "schema-registry-timeout", 10*time.Second, "schema registry request timeout")
}

// Client returns the registry's client, or nil without a URL.
func (r SchemaRegistry) Client() (consumers.SchemaRegistry, error) {
	if r.URL == "" {
		return nil, nil
	}
	strategy, err := registry.ParseStrategy(r.Subjects)
	if err != nil {
		return nil, err
	}
	password, err := Secret(r.Password, r.PasswordFile, "schema-registry-password")
	if err != nil {
		return nil, err
	}
	c, err := registry.New(registry.Config{URL: r.URL, Username: r.Username, Password: password, Strategy: strategy, Timeout: r.Timeout})
	if err != nil {
		return nil, err
	}
	return c, nil
}
