package daemon

import (
	"testing"

	"go.yaml.in/yaml/v3"
)

// What the bench writes into service files must read back as itself.
func TestYAMLQuoting(t *testing.T) {
	items := []string{"/bin/sh", "-c", `echo "$$ $(date +%s%N)" > /shared/started; exec sleep 100000`, "a: b", "#x", "'q'", "\\", "ünï"}
	var got struct {
		One  string   `yaml:"one"`
		List []string `yaml:"list"`
	}
	doc := "one: " + YAMLString(items[2]) + "\nlist: " + YAMLList(items...) + "\n"
	if err := yaml.Unmarshal([]byte(doc), &got); err != nil {
		t.Fatalf("%s: %v", doc, err)
	}
	if got.One != items[2] || len(got.List) != len(items) {
		t.Fatalf("%s: read back %+v", doc, got)
	}
	for i := range items {
		if got.List[i] != items[i] {
			t.Errorf("item %d: read back %q, wrote %q", i, got.List[i], items[i])
		}
	}
}
