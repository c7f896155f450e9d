package consumers

import "reflect"

// fillDefaults sets every field of *c that holds its zero value to that
// field's value in d: in a Config, a field left zero means the default.
func fillDefaults[T any](c *T, d T) {
	dst, def := reflect.ValueOf(c).Elem(), reflect.ValueOf(d)
	for i := range dst.NumField() {
		if f := dst.Field(i); f.CanSet() && f.IsZero() {
			f.Set(def.Field(i))
		}
	}
}
