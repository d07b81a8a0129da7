package jobs

import (
	"encoding/json"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/pushdesk/pushdesk/app/delivery"
)

// An aggregated delivery task recounts: asynq may make it twice from the
// same deliveries (see delivery.Payload.Recount).
func TestAggregatedDeliveriesRecount(t *testing.T) {
	one := func(uid uint64) *asynq.Task {
		task, err := NewDelayedDeliverTask(&delivery.Delivery{Kind: "comment", Body: []byte(`{}`), UIDs: []uint64{uid}, IDs: []uint64{uid * 10}})
		if err != nil {
			t.Fatal(err)
		}
		return task
	}
	var p delivery.Payload
	if err := json.Unmarshal(aggregateDeliveries(GroupInactive, []*asynq.Task{one(1), one(2)}).Payload(), &p); err != nil {
		t.Fatal(err)
	}
	if !p.Recount || len(p.Deliveries) != 2 || p.Deliveries[1].UIDs[0] != 2 {
		t.Fatalf("aggregated payload = %+v, want both deliveries, recounted", p)
	}
	fast, err := NewDeliverTask([]*delivery.Delivery{{Kind: "comment", Body: []byte(`{}`), UIDs: []uint64{3}, IDs: []uint64{30}}})
	if err != nil {
		t.Fatal(err)
	}
	var fp delivery.Payload
	if err := json.Unmarshal(fast.Payload(), &fp); err != nil || fp.Recount {
		t.Fatalf("a fast task recounts (%v): its first attempt must add", err)
	}
}
