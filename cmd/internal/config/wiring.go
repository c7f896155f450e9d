package config

import (
	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/consumers"
	"github.com/banditstream/banditstream/store"
	"github.com/banditstream/banditstream/store/cold"
	"github.com/banditstream/banditstream/store/hot"
)

// The concrete types the binaries wire into the pipeline's interfaces:
// consumers and store define what they need; these checks keep the
// backends fitting.
var (
	_ consumers.ArmStore      = (*hot.Hot)(nil)
	_ consumers.Recoverer     = (*hot.Hot)(nil)
	_ consumers.Recoverer     = (*store.Tier)(nil)
	_ consumers.UserStore     = (*store.Tier)(nil)
	_ consumers.ArmReader     = (*hot.Hot)(nil)
	_ consumers.SessionStore  = (*store.Tier)(nil)
	_ consumers.MessageWriter = (*kafka.Writer)(nil)
	_ store.HotTier           = (*hot.Hot)(nil)
	_ store.ColdTier          = (*cold.Cold)(nil)
)
