// Package config holds the connection settings shared by the project's
// binaries and binds them to command-line flags and environment variables
// with one naming scheme: the flag -kafka-brokers is also read from
// BANDITSTREAM_KAFKA_BROKERS. A flag given on the command line wins over the
// environment, which wins over the documented default.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store/cold"
)

// EnvPrefix starts every environment variable the binaries read.
const EnvPrefix = "BANDITSTREAM_"

// Defaults of the connection settings. They match deploy/local and the
// services in deploy/compose.
const (
	DefaultKafkaBrokers = "127.0.0.1:9092"
	DefaultRedisAddr    = "127.0.0.1:6379"
	DefaultCQLHosts     = "127.0.0.1:9042"
	DefaultCQLKeyspace  = "banditstream"
)

// Topic names used by the pipeline (defined in schemas); DLQSuffix is
// appended to a source topic to name its dead-letter topic.
const (
	TopicInteractions  = schemas.TopicInteractions
	TopicScoreRequests = schemas.TopicScoreRequests
	TopicScoreResults  = schemas.TopicScoreResults
	DLQSuffix          = schemas.DeadLetterSuffix
)

// Kafka is how to reach the Kafka cluster.
type Kafka struct {
	Brokers  []string      // bootstrap brokers, host:port
	ClientID string        // reported to the brokers
	Timeout  time.Duration // dial and request timeout
	TLS      TLS
	// SASL is the mechanism (SASLPlain, SASLScramSHA256, SASLScramSHA512)
	// or SASLNone.
	SASL         string
	Username     string
	Password     string // never logged; see Redacted
	PasswordFile string
	// MaxMessageBytes bounds what a writer puts in one batch; 0 reads it
	// from the topics written (their max.message.bytes).
	MaxMessageBytes int64
}

// Redis is how to reach the hot tier (Redis, Redis Cluster or Dragonfly).
type Redis struct {
	Addr         string
	Username     string
	Password     string // never logged; see Redacted
	PasswordFile string
	DB           int
	TLS          TLS
}

// CQL is how to reach the cold tier (ScyllaDB or Cassandra).
type CQL struct {
	Hosts        []string
	Keyspace     string
	Username     string
	Password     string // never logged; see Redacted
	PasswordFile string
	Timeout      time.Duration
	TLS          TLS
	// Migrate applies the cold tier's schema (idempotently) before use;
	// otherwise it must exist (bandit-stack migrate).
	Migrate bool
	// Replication is the keyspace's replication when Migrate creates it.
	Replication string
	// Consistency is the CQL consistency of reads and writes.
	Consistency string
	// HistoryRetention is how long the cold tier keeps a history event
	// (0: for ever).
	HistoryRetention time.Duration
}

// Connections groups the settings of the three external systems.
type Connections struct {
	Kafka Kafka
	Redis Redis
	CQL   CQL
}

// Register defines the Kafka connection flags on fs, with the documented
// defaults (for tools that only talk to Kafka).
func (k *Kafka) Register(fs *flag.FlagSet) {
	k.Brokers = SplitList(DefaultKafkaBrokers)
	fs.Var((*listFlag)(&k.Brokers), "kafka-brokers", "Kafka bootstrap brokers, comma separated")
	fs.StringVar(&k.ClientID, "kafka-client-id", "banditstream", "client id reported to Kafka")
	fs.DurationVar(&k.Timeout, "kafka-timeout", 10*time.Second, "Kafka dial and request timeout")
	fs.Int64Var(&k.MaxMessageBytes, "kafka-max-message-bytes", 0, "largest batch a writer sends to one partition (0: the written topics' max.message.bytes, read at start)")
	k.registerSecurity(fs)
}

// Validate reports the first Kafka setting that cannot work.
func (k *Kafka) Validate() error {
	var errs []error
	if len(k.Brokers) == 0 {
		errs = append(errs, errors.New("kafka-brokers: at least one broker is needed"))
	}
	for _, b := range k.Brokers {
		if !strings.Contains(b, ":") {
			errs = append(errs, fmt.Errorf("kafka-brokers: %q has no port", b))
		}
	}
	if k.Timeout <= 0 {
		errs = append(errs, errors.New("kafka-timeout must be positive"))
	}
	if k.MaxMessageBytes != 0 && k.MaxMessageBytes < 1024 {
		errs = append(errs, errors.New("kafka-max-message-bytes: 0 (read from the topics) or at least 1024"))
	}
	return errors.Join(errs...)
}

// Register defines the hot tier connection flags on fs (for tools that
// only talk to the hot tier).
func (r *Redis) Register(fs *flag.FlagSet) {
	fs.StringVar(&r.Addr, "redis-addr", DefaultRedisAddr, "hot tier address, host:port")
	fs.StringVar(&r.Username, "redis-username", "", "hot tier ACL user name")
	fs.StringVar(&r.Password, "redis-password", "", "hot tier password (prefer the environment variable or -redis-password-file)")
	fs.StringVar(&r.PasswordFile, "redis-password-file", "", "file holding the hot tier password")
	fs.IntVar(&r.DB, "redis-db", 0, "hot tier database number (Redis only; 0 on a cluster)")
	r.TLS.register(fs, "redis", "the hot tier")
}

// Validate reports a hot tier setting that cannot work.
func (r *Redis) Validate() error {
	if r.Addr == "" || !strings.Contains(r.Addr, ":") {
		return fmt.Errorf("redis-addr: %q is not host:port", r.Addr)
	}
	return nil
}

// Register defines the connection flags on fs, with the documented defaults.
func (c *Connections) Register(fs *flag.FlagSet) {
	c.Kafka.Register(fs)

	c.Redis.Register(fs)

	c.CQL.Hosts = SplitList(DefaultCQLHosts)
	fs.Var((*listFlag)(&c.CQL.Hosts), "cql-hosts", "cold tier contact points, comma separated host:port")
	fs.StringVar(&c.CQL.Keyspace, "cql-keyspace", DefaultCQLKeyspace, "cold tier keyspace")
	fs.StringVar(&c.CQL.Username, "cql-username", "", "cold tier user name")
	fs.StringVar(&c.CQL.Password, "cql-password", "", "cold tier password (prefer the environment variable or -cql-password-file)")
	fs.StringVar(&c.CQL.PasswordFile, "cql-password-file", "", "file holding the cold tier password")
	fs.DurationVar(&c.CQL.Timeout, "cql-timeout", 10*time.Second, "cold tier connect and query timeout")
	fs.BoolVar(&c.CQL.Migrate, "cql-migrate", false, "create the cold tier's keyspace and tables if missing before starting (as bandit-stack migrate does)")
	fs.StringVar(&c.CQL.Replication, "cql-replication", cold.DefaultReplication, "replication of the keyspace when it is created (with -cql-migrate)")
	fs.StringVar(&c.CQL.Consistency, "cql-consistency", "LOCAL_QUORUM", "consistency of cold tier reads and writes")
	fs.DurationVar(&c.CQL.HistoryRetention, "cql-history-retention", cold.DefaultHistoryRetention, "how long the cold tier keeps each history event (a CQL TTL; 0: for ever)")
	c.CQL.TLS.register(fs, "cql", "the cold tier")
}

// Validate reports the first setting that cannot work.
func (c *Connections) Validate() error {
	errs := []error{c.Kafka.Validate()}
	errs = append(errs, c.Redis.Validate())
	if len(c.CQL.Hosts) == 0 {
		errs = append(errs, errors.New("cql-hosts: at least one contact point is needed"))
	}
	if c.CQL.Keyspace == "" {
		errs = append(errs, errors.New("cql-keyspace: must not be empty"))
	}
	if c.CQL.Timeout <= 0 {
		errs = append(errs, errors.New("cql-timeout must be positive"))
	}
	if c.CQL.HistoryRetention < 0 || c.CQL.HistoryRetention > cold.MaxTTL {
		errs = append(errs, fmt.Errorf("cql-history-retention: must be between 0 and %s (CQL's largest TTL)", cold.MaxTTL))
	}
	return errors.Join(errs...)
}

// EnvName is the environment variable that sets the flag called name.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// EnvNames lists the environment variables that fs reads, sorted.
func EnvNames(fs *flag.FlagSet) []string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, EnvName(f.Name)) })
	sort.Strings(names)
	return names
}

// ConfigFlag is the flag (and BANDITSTREAM_CONFIG the variable) naming an
// optional configuration file that every binary reads.
const ConfigFlag = "config"

// Parse parses args into fs, then fills every flag not given on the command
// line from its environment variable, if set, and then from the
// configuration file of -config, if any: lines of VARIABLE=value with the
// environment's names (# starts a comment), the format of an env file. The
// command line wins over the environment, the environment over the file.
// lookup is os.LookupEnv in the binaries and a map in tests. Errors name
// the variable but never its value, which may be a secret.
func Parse(fs *flag.FlagSet, args []string, lookup func(string) (string, bool)) error {
	if fs.Lookup(ConfigFlag) == nil {
		fs.String(ConfigFlag, "", "configuration file: lines of "+EnvPrefix+"*=value; the command line and the environment win over it")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if lookup == nil {
		lookup = os.LookupEnv
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		v, ok := lookup(EnvName(f.Name))
		if !ok {
			return
		}
		set[f.Name] = true
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("environment variable %s: invalid value for -%s", EnvName(f.Name), f.Name))
		}
	})
	if path := fs.Lookup(ConfigFlag).Value.String(); path != "" && len(errs) == 0 {
		errs = append(errs, parseFile(fs, path, set))
	}
	return errors.Join(errs...)
}

// ParseArgs parses a command's args into fs (as Parse does, from the
// environment and the -config file too), with usage and errors on stderr,
// then runs each check. help reports that -h was asked for and the usage
// printed: the command then has nothing more to do.
func ParseArgs(fs *flag.FlagSet, args []string, stderr io.Writer, checks ...func() error) (help bool, err error) {
	fs.SetOutput(stderr)
	if err := Parse(fs, args, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		return false, err
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return false, err
		}
	}
	return false, nil
}

// parseFile sets, from the configuration file at path, every flag not set
// yet.
func parseFile(fs *flag.FlagSet, path string, set map[string]bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("-%s: %w", ConfigFlag, err)
	}
	byEnv := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { byEnv[EnvName(f.Name)] = f.Name })
	var errs []error
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		key = strings.TrimSpace(key)
		where := fmt.Sprintf("%s line %d", path, i+1)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: not VARIABLE=value", where))
			continue
		}
		name, known := byEnv[key]
		switch {
		case !known:
			errs = append(errs, fmt.Errorf("%s: %s is not a setting of this program", where, key))
		case name == ConfigFlag:
			errs = append(errs, fmt.Errorf("%s: a configuration file cannot name another", where))
		case !set[name]:
			set[name] = true
			if err := fs.Set(name, unquote(strings.TrimSpace(value))); err != nil {
				errs = append(errs, fmt.Errorf("%s: invalid value of %s for -%s", where, key, name))
			}
		}
	}
	return errors.Join(errs...)
}

// unquote strips one pair of matching single or double quotes.
func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

// Redacted returns a copy of c that is safe to log.
func (c Connections) Redacted() Connections {
	for _, p := range []*string{&c.Kafka.Password, &c.Redis.Password, &c.CQL.Password} {
		if *p != "" {
			*p = "REDACTED"
		}
	}
	return c
}

type listFlag []string

func (l *listFlag) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *listFlag) Set(s string) error {
	items := SplitList(s)
	if len(items) == 0 {
		return errors.New("empty list")
	}
	*l = items
	return nil
}

// SplitList splits a comma-separated list, dropping blanks and empty items.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
