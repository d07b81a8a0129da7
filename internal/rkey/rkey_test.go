package rkey

import (
	"slices"
	"testing"
)

// The slots Redis itself gives (CLUSTER KEYSLOT on redis-server 7.0).
func TestSlotMatchesRedis(t *testing.T) {
	tests := []struct {
		key  string
		want uint16
	}{
		{"foo", 12182},
		{"123456789", 12739},
		{"{user1000}.following", 3443},
		{"foo{}{bar}", 8363},
		{"foo{{bar}}zap", 4015},
		{"pd:{u42}:unread", Slot("u42")},
	}
	for _, tt := range tests {
		if got := Slot(tt.key); got != tt.want {
			t.Errorf("Slot(%q) = %d, want %d", tt.key, got, tt.want)
		}
	}
	if Slot(User(42, "a")) != Slot(User(42, "b")) || Slot(Instance("x", "a")) != Slot(Instance("x", "b")) {
		t.Error("one user's (or instance's) keys are in different slots")
	}
}

func TestRuns(t *testing.T) {
	uids := []uint64{1, 2, 1, 1, 3}
	key := func(i int) string { return User(uids[i], "k") }
	if got, want := Runs(5, 2, false, key), [][]int{{0, 1}, {2, 3}, {4}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("Runs(standalone) = %v, want %v", got, want)
	}
	if got, want := Runs(5, 2, true, key), [][]int{{0, 2}, {1}, {3}, {4}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("Runs(cluster) = %v, want %v", got, want)
	}
}
