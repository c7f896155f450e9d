package hot

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/banditstream/banditstream/store/state"
)

// The per-context priors of a namespace live in one hash, so one command
// reads or replaces them all:
//
//	<prefix>:priors        hash: context → "α0 β0 arms"; fittedField → Unix ms of the fit
//	<prefix>:priors:fit    string, with a TTL: set by the process fitting them
//
// Contexts never hold control characters, so fittedField is no context.
const fittedField = "\x1ffitted"

func (k Keys) priorsKey() string    { return k.Prefix + ":priors" }
func (k Keys) priorsFitKey() string { return k.Prefix + ":priors:fit" }

// Priors reads the latest fit of per-context priors; a namespace never
// fitted has FittedMs 0 and no contexts.
func (h *Hot) Priors(ctx context.Context) (state.PriorFit, error) {
	m, err := h.rdb.HGetAll(ctx, h.keys.priorsKey()).Result()
	if err != nil {
		return state.PriorFit{}, fmt.Errorf("reading the priors of namespace %s: %w", h.keys.Prefix, err)
	}
	fit := state.PriorFit{Contexts: make(map[string]state.ContextPrior, len(m))}
	for f, v := range m {
		if f == fittedField {
			if fit.FittedMs, err = strconv.ParseInt(v, 10, 64); err != nil {
				return fit, fmt.Errorf("the priors of namespace %s: fitted at %q", h.keys.Prefix, v)
			}
			continue
		}
		var p state.ContextPrior
		parts := strings.Fields(v)
		if len(parts) == 3 {
			p.Prior.Alpha, err = strconv.ParseFloat(parts[0], 64)
			if err == nil {
				p.Prior.Beta, err = strconv.ParseFloat(parts[1], 64)
			}
			if err == nil {
				p.Arms, err = strconv.Atoi(parts[2])
			}
		}
		if len(parts) != 3 || err != nil || p.Prior.Validate() != nil {
			return fit, fmt.Errorf("the priors of namespace %s: context %q holds %q", h.keys.Prefix, f, v)
		}
		fit.Contexts[f] = p
	}
	return fit, nil
}

// SetPriors replaces the namespace's per-context priors with fit, at once.
func (h *Hot) SetPriors(ctx context.Context, fit state.PriorFit) error {
	vals := make([]any, 0, 2+2*len(fit.Contexts))
	vals = append(vals, fittedField, fit.FittedMs)
	for c, p := range fit.Contexts {
		vals = append(vals, c, strconv.FormatFloat(p.Prior.Alpha, 'g', -1, 64)+" "+
			strconv.FormatFloat(p.Prior.Beta, 'g', -1, 64)+" "+strconv.Itoa(p.Arms))
	}
	_, err := h.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, h.keys.priorsKey())
		p.HSet(ctx, h.keys.priorsKey(), vals...)
		return nil
	})
	if err != nil {
		return fmt.Errorf("writing the priors of namespace %s: %w", h.keys.Prefix, refused(err))
	}
	return nil
}

// ClaimPriorFit reports whether this process is the one to fit the priors
// now: the first to ask in each period of every gets true. A claim is not
// released: a process that dies while fitting leaves the next period's
// fit to whoever asks then.
func (h *Hot) ClaimPriorFit(ctx context.Context, every time.Duration) (bool, error) {
	ok, err := h.rdb.SetNX(ctx, h.keys.priorsFitKey(), "1", every).Result()
	if err != nil {
		return false, fmt.Errorf("claiming the prior fit of namespace %s: %w", h.keys.Prefix, refused(err))
	}
	return ok, nil
}
