package schemas_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/banditstream/banditstream/schemas"
)

// A shell producer sends JSON with a content-type header; the consumer picks
// the codec from the header, decodes, and validates.
func Example() {
	codec, err := schemas.CodecFor("application/json")
	if err != nil {
		panic(err)
	}
	data := []byte(`{"event_id":"e-1","user_id":"u-1","item_id":"sku-9","type":"click","event_time_ms":1767225600000}`)
	lim := schemas.DefaultLimits()
	var ev schemas.Interaction
	if err := codec.DecodeInteraction(lim, data, &ev); err != nil {
		panic(err)
	}
	now := time.UnixMilli(1767225600000)
	fmt.Println(schemas.EventTypeName(ev.GetType()), ev.GetUserId(), ev.GetItemId(), lim.CheckInteraction(&ev, now))

	ev.Value = -3
	err = lim.CheckInteraction(&ev, now)
	fmt.Println(err, errors.Is(err, schemas.ErrInvalid))
	// Output:
	// click u-1 sku-9 <nil>
	// invalid value: must not be negative, got -3 true
}
