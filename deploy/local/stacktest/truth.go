package stacktest

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store"
	"github.com/banditstream/banditstream/store/hot"
	"github.com/banditstream/banditstream/store/state"
)

// UserTruth is what a user's own state must be after the events sent:
// counts per arm ("context\x1fitem" → counts by type) and the ids of the
// user's events.
type UserTruth struct {
	Counts map[string][]int64
	Events map[string]bool
}

// AddArmEvent counts ev in arms.
func AddArmEvent(arms map[state.Arm]state.Counts, ev *schemas.Interaction) {
	a := state.Arm{Context: ev.GetContext(), Item: ev.GetItemId()}
	c := arms[a]
	c.ByType[state.TypeIndex(ev.GetType())]++
	c.LastEventMs = max(c.LastEventMs, ev.GetEventTimeMs())
	arms[a] = c
}

// AddUserEvent records ev in its user's truth.
func AddUserEvent(users map[string]*UserTruth, ev *schemas.Interaction) {
	u := users[ev.GetUserId()]
	if u == nil {
		u = &UserTruth{Counts: map[string][]int64{}, Events: map[string]bool{}}
		users[ev.GetUserId()] = u
	}
	arm := ev.GetContext() + "\x1f" + ev.GetItemId()
	if u.Counts[arm] == nil {
		u.Counts[arm] = make([]int64, state.NumEventTypes)
	}
	u.Counts[arm][state.TypeIndex(ev.GetType())]++
	u.Events[ev.GetEventId()] = true
}

// ArmDiff is how the hot tier's arm counts differ from the truth.
type ArmDiff struct {
	Counted, Lost, Twice int      // events counted; missing; counted more often than sent
	Wrong                []string // the first arms that differ, described
	WrongArms            int
}

// CompareArms reads every arm of want from the hot tier and compares its
// counts by type.
func CompareArms(ctx context.Context, hot *hot.Hot, want map[state.Arm]state.Counts) (ArmDiff, error) {
	arms := make([]state.Arm, 0, len(want))
	for a := range want {
		arms = append(arms, a)
	}
	got, err := hot.Counts(ctx, arms)
	if err != nil {
		return ArmDiff{}, err
	}
	var d ArmDiff
	for i, a := range arms {
		w := want[a]
		for ty := range w.ByType {
			d.Counted += int(got[i].ByType[ty])
			switch n := got[i].ByType[ty] - w.ByType[ty]; {
			case n < 0:
				d.Lost += int(-n)
			case n > 0:
				d.Twice += int(n)
			}
		}
		if got[i].ByType != w.ByType {
			if d.WrongArms++; len(d.Wrong) < 5 {
				d.Wrong = append(d.Wrong, fmt.Sprintf("arm %+v: counts %v, want %v", a, got[i].ByType, w.ByType))
			}
		}
	}
	return d, nil
}

// CompareUsers loads every user of want into the hot tier (from the cold
// tier when offloaded) and compares own counts and recent history (each
// event once, historyCap of them at most) with the truth. It returns how
// many users differ and the first few, described.
func CompareUsers(ctx context.Context, tier *store.Tier, hot *hot.Hot, want map[string]*UserTruth, historyCap int) (int, []string, error) {
	epoch, err := tier.Epoch(ctx)
	if err != nil {
		return 0, nil, err
	}
	if epoch == "" {
		return 0, nil, errors.New("the hot tier lost its state and is not recovered")
	}
	bad, wrong := 0, []string(nil)
	for user, truth := range want {
		counts, hist, err := readUser(ctx, tier, hot, user, epoch)
		if err != nil {
			return 0, nil, err
		}
		ok := len(counts) == len(truth.Counts) && len(hist) == min(historyCap, len(truth.Events))
		for arm, c := range truth.Counts {
			ok = ok && slices.Equal(counts[arm], c)
		}
		seen := map[string]bool{}
		for _, h := range hist {
			ok = ok && truth.Events[h.EventID] && !seen[h.EventID]
			seen[h.EventID] = true
		}
		if !ok {
			if bad++; len(wrong) < 3 {
				wrong = append(wrong, fmt.Sprintf("user %s: counts %v, history of %d; want counts %v, %d events",
					user, counts, len(hist), truth.Counts, len(truth.Events)))
			}
		}
	}
	return bad, wrong, nil
}

// readUser loads a user's session and reads its own counts and history. A
// pipeline still running may offload the session between the load and the
// reads (it was idle, or is loaded already and idle since): the reads are
// taken only when the session is still there after them, else it is loaded
// and read again.
func readUser(ctx context.Context, tier *store.Tier, hot *hot.Hot, user, epoch string) (map[string][]int64, []state.HistoryEvent, error) {
	for attempt := 0; ; attempt++ {
		if err := tier.EnsureLoaded(ctx, []string{user}, epoch); err != nil {
			return nil, nil, err
		}
		counts, err := hot.UserArmCounts(ctx, user)
		if err != nil {
			return nil, nil, err
		}
		hist, err := hot.UserHistory(ctx, user)
		if err != nil {
			return nil, nil, err
		}
		loaded, err := hot.SessionsLoaded(ctx, []string{user})
		if err != nil {
			return nil, nil, err
		}
		if loaded[0] {
			return counts, hist, nil
		}
		if attempt == 10 {
			return nil, nil, fmt.Errorf("user %s: the session is offloaded again every time it is loaded", user)
		}
	}
}
