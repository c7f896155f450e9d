package main

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/cmd/internal/config"
)

// scramCommand creates or updates a Kafka SASL/SCRAM user.
func scramCommand(fs *flag.FlagSet, conns *config.Connections) func(context.Context, []string, io.Writer) error {
	o := scramOptions{conns: conns}
	fs.StringVar(&o.user, "scram-user", "", "name of the Kafka SASL/SCRAM user to create or update")
	fs.StringVar(&o.password, "scram-password", "", "the user's password (prefer the environment variable or -scram-password-file)")
	fs.StringVar(&o.passwordFile, "scram-password-file", "", "file holding the user's password")
	fs.StringVar(&o.mechanism, "scram-mechanism", config.SASLScramSHA512, "scram-sha-256 or scram-sha-512")
	fs.IntVar(&o.iterations, "scram-iterations", 8192, "PBKDF2 iterations of the stored credential (at least 4096)")
	return func(ctx context.Context, _ []string, stdout io.Writer) error { return setScramUser(ctx, o, stdout) }
}

type scramOptions struct {
	conns        *config.Connections
	user         string
	password     string
	passwordFile string
	mechanism    string
	iterations   int
}

// setScramUser creates or updates a SCRAM credential on the brokers (the
// AlterUserScramCredentials API of Kafka 3.5+ in KRaft mode). The broker
// stores only the salted password; the password itself never leaves this
// process.
func setScramUser(ctx context.Context, o scramOptions, stdout io.Writer) error {
	password, err := config.Secret(o.password, o.passwordFile, "scram-password")
	if err != nil {
		return err
	}
	cred, err := scramCredential(o.user, password, o.mechanism, o.iterations)
	if err != nil {
		return err
	}
	client, err := o.conns.Kafka.Client()
	if err != nil {
		return err
	}
	resp, err := client.AlterUserScramCredentials(ctx, &kafka.AlterUserScramCredentialsRequest{Upsertions: []kafka.UserScramCredentialsUpsertion{cred}})
	if err != nil {
		return fmt.Errorf("setting the SCRAM credential of %s: %w", o.user, err)
	}
	for _, r := range resp.Results {
		if r.Error != nil {
			return fmt.Errorf("setting the SCRAM credential of %s: %w", r.User, r.Error)
		}
	}
	fmt.Fprintf(stdout, "kafka: SCRAM user %s (%s) set\n", o.user, strings.ToLower(o.mechanism))
	return nil
}

// scramCredential salts password as RFC 5802 says (SaltedPassword :=
// Hi(password, salt, i), PBKDF2 with the mechanism's HMAC) with a random
// salt.
func scramCredential(user, password, mechanism string, iterations int) (kafka.UserScramCredentialsUpsertion, error) {
	var mech kafka.ScramMechanism
	var h func() hash.Hash
	switch strings.ToLower(mechanism) {
	case config.SASLScramSHA256:
		mech, h = kafka.ScramMechanismSha256, sha256.New
	case config.SASLScramSHA512:
		mech, h = kafka.ScramMechanismSha512, sha512.New
	default:
		return kafka.UserScramCredentialsUpsertion{}, fmt.Errorf("-scram-mechanism: %q is not scram-sha-256 or scram-sha-512", mechanism)
	}
	switch {
	case user == "":
		return kafka.UserScramCredentialsUpsertion{}, errors.New("-scram-user is required")
	case password == "":
		return kafka.UserScramCredentialsUpsertion{}, errors.New("no password: set BANDITSTREAM_SCRAM_PASSWORD or -scram-password-file")
	case iterations < 4096:
		return kafka.UserScramCredentialsUpsertion{}, errors.New("-scram-iterations: Kafka requires at least 4096")
	}
	salt := make([]byte, 32)
	if _, err := rand.Read(salt); err != nil {
		return kafka.UserScramCredentialsUpsertion{}, err
	}
	salted, err := pbkdf2.Key(h, password, salt, iterations, h().Size())
	if err != nil {
		return kafka.UserScramCredentialsUpsertion{}, err
	}
	return kafka.UserScramCredentialsUpsertion{Name: user, Mechanism: mech, Iterations: iterations, Salt: salt, SaltedPassword: salted}, nil
}
