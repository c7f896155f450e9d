package consumers

import (
	"testing"
	"time"

	"github.com/banditstream/banditstream/sampler"
)

// A zero field takes the published default; a set one is kept; the
// defaults that follow other fields follow them.
func TestConfigDefaults(t *testing.T) {
	custom := RewardModel{Prior: sampler.Prior{Alpha: 2, Beta: 3}, Lambda: 0.5}
	custom.Weights[1] = 1
	cases := []struct {
		name  string
		in    ScorerConfig
		check func(ScorerConfig) bool
	}{
		{"zero is the default", ScorerConfig{}, func(c ScorerConfig) bool {
			d := DefaultScorerConfig()
			return c.Topic == d.Topic && c.ResultsTopic == d.ResultsTopic && c.GroupID == d.GroupID &&
				c.FetchMaxBytes == d.FetchMaxBytes && c.CacheBytes == d.CacheBytes && c.CacheMaxAge == d.CacheMaxAge &&
				c.CacheMaxStale == d.CacheMaxStale && c.Model == d.Model && c.ModelVersion == d.Model.Version() &&
				c.Limits == d.Limits && c.CommitInterval == d.CommitInterval && c.Logger != nil
		}},
		{"set fields are kept", ScorerConfig{Topic: "t", CacheBytes: -1, SessionLoads: 3}, func(c ScorerConfig) bool {
			return c.Topic == "t" && c.CacheBytes == -1 && c.SessionLoads == 3 && c.GroupID == DefaultScorerConfig().GroupID
		}},
		{"staleness follows the maximum age", ScorerConfig{CacheMaxAge: 2 * time.Second}, func(c ScorerConfig) bool {
			return c.CacheMaxStale == 20*time.Second
		}},
		{"a set staleness is kept", ScorerConfig{CacheMaxAge: 2 * time.Second, CacheMaxStale: 3 * time.Second}, func(c ScorerConfig) bool {
			return c.CacheMaxStale == 3*time.Second
		}},
		{"the version names the model given", ScorerConfig{Model: custom}, func(c ScorerConfig) bool {
			return c.Model == custom && c.ModelVersion == custom.Version() && c.ModelVersion != DefaultRewardModel().Version()
		}},
		{"a set version is kept", ScorerConfig{Model: custom, ModelVersion: "v7"}, func(c ScorerConfig) bool {
			return c.ModelVersion == "v7"
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.in
			c.setDefaults()
			if !tc.check(c) {
				t.Errorf("%+v", c)
			}
		})
	}
	t.Run("ingest", func(t *testing.T) {
		c := IngestConfig{GroupID: "g"}
		c.setDefaults()
		d := DefaultIngestConfig()
		if c.GroupID != "g" || c.Topic != d.Topic || c.FetchMaxBytes != d.FetchMaxBytes || c.FetchMaxWait != d.FetchMaxWait ||
			c.DrainTimeout != d.DrainTimeout || c.SessionTimeout != d.SessionTimeout || c.Limits != d.Limits || c.Logger == nil {
			t.Errorf("%+v", c)
		}
	})
}
