// Package ids makes Pushdesk's 63-bit message ids (time, node, sequence)
// and leases each instance a node number in Redis so two instances never
// make the same id. It must not know what the ids are for.
package ids
