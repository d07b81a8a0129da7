// Package rawio reads and writes sockets with recvfrom(2) and sendto(2) made
// as raw system calls, waiting in the netpoller when the socket is not ready.
//
// Why: a call the runtime knows as a system call (net.Conn's Read and
// Write) marks its P as in a syscall. When such a call is slow, and loopback
// writes under virtualisation often are (the kernel runs the receiver's
// TCP input on the writer's thread), sysmon takes the P away and hands it to
// another thread, parking this one when the call returns. Worse, every such
// take puts sysmon back to waking every 20 µs: a busy process then spends a
// tenth of its CPU in sysmon's sleeps and the thread handoffs it causes. A
// call on a non-blocking socket never blocks, so it is safe to make without
// telling the scheduler, as the runtime does for its own short calls.
//
// Each Writer and Reader keeps its state with the connection because the
// function handed to syscall.RawConn escapes: a closure per call would cost
// an allocation per call.
package rawio
