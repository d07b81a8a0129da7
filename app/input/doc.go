// Package input checks the parts of request bodies that several requests
// share (a message's kind and body, optional keys, user ids, duplicate
// keys) and answers what is wrong with the contract's 400 or 413.
package input
