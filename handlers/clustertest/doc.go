// Package clustertest holds the multi-process tests: several real
// pushdesk processes, a Redis server of the test's own (so it can be
// restarted) and the shared MariaDB, driven as a deployment would be —
// kill -9, SIGTERM, Redis restarts. Its Redis Cluster suite
// (rediscluster_test.go, failover_test.go) runs them on a 3-master
// cluster with a replica each (testsvc.StartRedisCluster), over a shard
// map across two MariaDB servers, and kills a master. It has no non-test
// code.
package clustertest
