package schemas

import (
	_ "embed"

	"github.com/banditstream/banditstream/schemas/pb"
)

// The messages generated from proto/banditstream/v1, aliased so callers
// import schemas alone.
type (
	// Interaction is one user event on one item.
	Interaction = pb.Interaction
	// ScoreRequest asks for the top k of candidates for a user.
	ScoreRequest = pb.ScoreRequest
	// ScoreResponse is the ranking for one request.
	ScoreResponse = pb.ScoreResponse
	// RankedItem is one entry of a ranking.
	RankedItem = pb.RankedItem
	// Decision is a score request as the scorer answered it, for offline
	// policy evaluation.
	Decision = pb.Decision
	// Timing tells where a request's time went.
	Timing = pb.Timing
	// Explanation says where a ranked item's posterior came from.
	Explanation = pb.Explanation
	// PosteriorSource is where a global posterior came from.
	PosteriorSource = pb.PosteriorSource
	// EventType is the kind of an interaction.
	EventType = pb.EventType
	// ExplorationMode is how a score request explores.
	ExplorationMode = pb.ExplorationMode
)

// Event types.
const (
	Impression = pb.EventType_EVENT_TYPE_IMPRESSION
	Click      = pb.EventType_EVENT_TYPE_CLICK
	Wishlist   = pb.EventType_EVENT_TYPE_WISHLIST
	AddToCart  = pb.EventType_EVENT_TYPE_ADD_TO_CART
	Order      = pb.EventType_EVENT_TYPE_ORDER
)

// Exploration modes. ModeDefault lets the scorer choose (Thompson sampling).
const (
	ModeDefault  = pb.ExplorationMode_EXPLORATION_MODE_UNSPECIFIED
	ModeThompson = pb.ExplorationMode_EXPLORATION_MODE_THOMPSON
	ModeMean     = pb.ExplorationMode_EXPLORATION_MODE_MEAN
)

// Posterior sources of an explanation.
const (
	SourceCache = pb.PosteriorSource_POSTERIOR_SOURCE_CACHE
	SourceHot   = pb.PosteriorSource_POSTERIOR_SOURCE_HOT
	SourcePrior = pb.PosteriorSource_POSTERIOR_SOURCE_PRIOR
)

// sourceNames are the JSON names of the posterior sources, by value.
var sourceNames = [...]string{SourceCache: "cache", SourceHot: "hot", SourcePrior: "prior"}

// SourceName is the lower-case name of s used in JSON ("cache", "hot",
// "prior"), or "" for an unknown source.
func SourceName(s PosteriorSource) string {
	if s <= 0 || int(s) >= len(sourceNames) {
		return ""
	}
	return sourceNames[s]
}

// ParseSource is the inverse of SourceName ("" is the unspecified source).
func ParseSource(s string) (PosteriorSource, bool) {
	if s == "" {
		return 0, true
	}
	for i, n := range sourceNames {
		if n != "" && n == s {
			return PosteriorSource(i), true
		}
	}
	return 0, false
}

// eventTypeNames are the JSON names of the event types, indexed by value.
var eventTypeNames = [...]string{
	Impression: "impression",
	Click:      "click",
	Wishlist:   "wishlist",
	AddToCart:  "add_to_cart",
	Order:      "order",
}

// EventTypeName is the lower-case name of t used in JSON and in
// configuration ("click", "add_to_cart"), or "" for an unknown type.
func EventTypeName(t EventType) string {
	if t <= 0 || int(t) >= len(eventTypeNames) {
		return ""
	}
	return eventTypeNames[t]
}

// ParseEventType is the inverse of EventTypeName.
func ParseEventType(s string) (EventType, bool) {
	for i, n := range eventTypeNames {
		if n != "" && n == s {
			return EventType(i), true
		}
	}
	return 0, false
}

// ModeName is the lower-case name of m used in JSON ("thompson", "mean"),
// or "" for the default.
func ModeName(m ExplorationMode) string {
	switch m {
	case ModeThompson:
		return "thompson"
	case ModeMean:
		return "mean"
	default:
		return ""
	}
}

// ParseMode is the inverse of ModeName.
func ParseMode(s string) (ExplorationMode, bool) {
	switch s {
	case "":
		return ModeDefault, true
	case "thompson":
		return ModeThompson, true
	case "mean":
		return ModeMean, true
	default:
		return 0, false
	}
}

// ProtoSource is the text of schemas/proto/banditstream/v1/banditstream.proto,
// the schema a registry is given for the pipeline's own outputs.
//
//go:embed proto/banditstream/v1/banditstream.proto
var ProtoSource string
