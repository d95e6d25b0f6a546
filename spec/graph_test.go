package spec

import (
	"reflect"
	"testing"
)

func TestParseCycles(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []wantError
	}{
		{"two", `services:
  a: {command: [x], depends_on: [b]}
  b: {command: [x], depends_on: [a]}
`, []wantError{{3, 34, "services.b.depends_on[0]", "dependency cycle: a -> b -> a"}}},
		{"three, reported at the closing edge", `services:
  a:
    command: [x]
    depends_on: [b]
  b:
    command: [x]
    depends_on: [c]
  c:
    command: [x]
    depends_on: [d, a]
  d:
    command: [x]
`, []wantError{{10, 21, "services.c.depends_on[1]", "dependency cycle: a -> b -> c -> a"}}},
		{"a tail into a cycle is not a cycle", `services:
  tail: {command: [x], depends_on: [a]}
  a: {command: [x], depends_on: [b]}
  b: {command: [x], depends_on: [a]}
`, []wantError{{4, 34, "services.b.depends_on[0]", "dependency cycle: a -> b -> a"}}},
		{"two cycles", `services:
  a: {command: [x], depends_on: [b]}
  b: {command: [x], depends_on: [a]}
  c: {command: [x], depends_on: [d], notify: true}
  d: {command: [x], depends_on: [{service: c, condition: healthy}]}
`, []wantError{
			{3, 34, "services.b.depends_on[0]", "dependency cycle: a -> b -> a"},
			{5, 34, "services.d.depends_on[0]", "dependency cycle: c -> d -> c"},
		}},
		{"self is not a cycle but its own error", `services:
  a: {command: [x], depends_on: [a]}
`, []wantError{{2, 34, "services.a.depends_on[0]", "a depends on itself"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("corral.yaml", []byte(tc.yaml))
			checkErrors(t, err, tc.want)
		})
	}
}

func TestStartStopOrder(t *testing.T) {
	for _, tc := range []struct {
		name, yaml  string
		start, stop [][]string
	}{
		{"diamond and an independent service", `services:
  d: {command: [x], depends_on: [b, c]}
  b: {command: [x], depends_on: [a]}
  e: {command: [x]}
  c: {command: [x], depends_on: [a]}
  a: {command: [x]}
`,
			[][]string{{"e", "a"}, {"b", "c"}, {"d"}},
			[][]string{{"d", "e"}, {"b", "c"}, {"a"}}},
		{"independent services", `services:
  z: {command: [x]}
  y: {command: [x]}
  x: {command: [x]}
`,
			[][]string{{"z", "y", "x"}},
			[][]string{{"z", "y", "x"}}},
		{"earliest wave", `services:
  app: {command: [x], depends_on: [db, cache]}
  db: {command: [x], depends_on: [disk]}
  cache: {command: [x]}
  disk: {command: [x]}
`,
			// cache starts with disk, not just before app; and stops with
			// db, as soon as app is down.
			[][]string{{"cache", "disk"}, {"db"}, {"app"}},
			[][]string{{"app"}, {"db", "cache"}, {"disk"}}},
		{"no services", "services: {}\n", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustParse(t, tc.yaml)
			if got := StartOrder(c); !reflect.DeepEqual(got, tc.start) {
				t.Errorf("StartOrder = %v, want %v", got, tc.start)
			}
			if got := StopOrder(c); !reflect.DeepEqual(got, tc.stop) {
				t.Errorf("StopOrder = %v, want %v", got, tc.stop)
			}
		})
	}
}

// TestOrderInvalid: on a Config that Parse would refuse, the orders still
// end and name every service once.
func TestOrderInvalid(t *testing.T) {
	unit := func(name string, deps ...string) *Unit {
		u := &Unit{Service: Service{Name: name}}
		for _, d := range deps {
			u.DependsOn = append(u.DependsOn, Dependency{Name: d, Condition: DependStarted})
		}
		return u
	}
	c := &Config{Units: []*Unit{unit("a", "b"), unit("b", "a"), unit("c"), unit("d", "ghost", "d")}}
	if got, want := StartOrder(c), [][]string{{"c", "d"}, {"a", "b"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("StartOrder = %v, want %v", got, want)
	}
	if got, want := StopOrder(c), [][]string{{"c", "d"}, {"a", "b"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("StopOrder = %v, want %v", got, want)
	}
}
