// Package cluster is what makes several instances one service: the
// registry of who is connected where (in Redis), routing a user's frames
// to the instances holding their connections (pub/sub, one channel per
// instance), sweeping instances that died, the connection log, and the
// wake-ups of other processes' queue workers. It must not know what the
// frames mean: counts, broadcasts and control frames are handed to the
// functions in Deps.
package cluster
