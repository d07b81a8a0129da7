package handlers

import (
	"context"
	"encoding/binary"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
	fws "github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/app/hub"
)

const writeWait = 10 * time.Second

// wsWriter is the WebSocket side of hub.Writer.
type wsWriter struct {
	conn *fws.Conn
	cork *corkConn // nil when the listener is not ours
	// raw: frames are framed here and written straight to cork (a plain
	// TCP connection, no TLS in between).
	raw bool
}

func (w wsWriter) Write(frames []hub.Frame) error {
	if w.raw {
		return w.writeRaw(frames)
	}
	_ = w.conn.SetWriteDeadline(time.Now().Add(writeWait))
	if w.cork != nil && len(frames) > 1 {
		w.cork.Cork()
	}
	for _, f := range frames {
		if err := w.conn.WriteMessage(websocket.TextMessage, f.Data); err != nil {
			if w.cork != nil {
				_ = w.cork.Uncork()
			}
			return err
		}
	}
	if w.cork != nil {
		return w.cork.Uncork()
	}
	return nil
}

// writeRaw writes frames as one system call.
func (w wsWriter) writeRaw(frames []hub.Frame) error {
	if len(frames) == 1 {
		return w.cork.WriteFrames(framed(frames[0], nil))
	}
	buf := corkBufs.Get().(*[]byte)
	b := (*buf)[:0]
	for _, f := range frames {
		b = framed(f, b)
	}
	err := w.cork.WriteFrames(b)
	if cap(b) <= 64<<10 {
		*buf = b[:0]
		corkBufs.Put(buf)
	}
	return err
}

// framed appends f as a WebSocket text frame to dst; with dst nil a
// shared frame (a broadcast) is framed once for every connection.
func framed(f hub.Frame, dst []byte) []byte {
	if f.Shared != nil {
		b := f.Shared.Get(func() any { return appendTextFrame(nil, f.Data) }).([]byte)
		if dst == nil {
			return b
		}
		return append(dst, b...)
	}
	return appendTextFrame(dst, f.Data)
}

// appendTextFrame appends a final, unmasked (server to client) text frame.
func appendTextFrame(dst, data []byte) []byte {
	n := len(data)
	switch {
	case n < 126:
		dst = append(dst, 0x81, byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x81, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x81, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, data...)
}

// wsDirect adds hub.DirectWriter to a raw wsWriter.
type wsDirect struct{ wsWriter }

func (w wsDirect) TryWrite(frames []hub.Frame) (ok, flush bool, err error) {
	if len(frames) == 1 {
		return w.cork.TryWrite(framed(frames[0], nil))
	}
	var b []byte
	for _, f := range frames {
		b = framed(f, b)
	}
	return w.cork.TryWrite(b)
}

func (w wsDirect) Flush() error { return w.cork.Flush() }

func (w wsWriter) Ping() error {
	return w.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait))
}

// Close sends the close frame and ends the read loop at once. fasthttp's
// hijacked conn ignores Close, so the reader is woken by a deadline in the
// past and the TCP connection is closed underneath.
func (w wsWriter) Close(code int, reason string) {
	_ = w.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	_ = w.conn.SetReadDeadline(time.Now())
	if w.cork != nil {
		_ = w.cork.Conn.Close()
	}
}

// wsUpgrade rejects non-upgrade requests and, while draining, new ones.
func wsUpgrade(s *Server) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if s.draining.Load() {
			return app.Errorf(503, "draining", "this instance is restarting, reconnect")
		}
		if !fws.IsWebSocketUpgrade(c) {
			return app.Errorf(426, "upgrade_required", "this endpoint speaks WebSocket only")
		}
		c.Locals("remote", c.IP())
		if cc, plain := corkOf(c.Context().Conn()); cc != nil {
			c.Locals("cork", cc)
			c.Locals("plain", plain)
		}
		return c.Next()
	}
}

var wsBufferPool sync.Pool

// wsHandler runs one WebSocket: it connects the client, starts its single
// writer, and reads frames until the peer goes, is silent too long, or
// sends a frame over the limit (the library closes that with 1009).
func wsHandler(s *Server) fiber.Handler {
	a := s.App
	return fws.New(func(conn *fws.Conn) {
		id, _ := conn.Locals(localIdentity).(app.Identity)
		remote, _ := conn.Locals("remote").(string)
		cork, _ := conn.Locals("cork").(*corkConn)
		plain, _ := conn.Locals("plain").(bool)
		conn.SetReadLimit(app.MaxFrameBytes)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := a.Connect(ctx, id, app.ConnectOptions{Transport: "ws", RemoteAddr: remote})
		cancel()
		if err != nil {
			a.Log.Error("connect failed", "uid", id.UID, "err", err)
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseTryAgainLater, "unavailable"), time.Now().Add(time.Second))
			return
		}
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			var w hub.Writer = wsWriter{conn: conn, cork: cork}
			if cork != nil && plain && cork.raw != nil {
				w = wsDirect{wsWriter{conn: conn, cork: cork, raw: true}}
			}
			_ = c.Run(w, a.Cfg.Heartbeat)
		}()
		idle := a.Cfg.Heartbeat * 5 / 2
		_ = conn.SetReadDeadline(time.Now().Add(idle))
		conn.SetPongHandler(func(string) error {
			a.Heartbeat(c)
			return conn.SetReadDeadline(time.Now().Add(idle))
		})
		for {
			mt, data, err := conn.ReadMessage()
			if err != nil {
				break
			}
			_ = conn.SetReadDeadline(time.Now().Add(idle))
			a.Heartbeat(c)
			if mt != websocket.TextMessage && mt != websocket.BinaryMessage {
				continue
			}
			fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
			a.HandleFrame(fctx, c, data)
			fcancel()
		}
		a.Disconnect(c, remote)
		<-wrote // the writer must be gone before the pooled conn is reused
	}, fws.Config{ReadBufferSize: 1024, WriteBufferSize: 1024, WriteBufferPool: &wsBufferPool})
}
