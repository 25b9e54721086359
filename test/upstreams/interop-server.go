// An upstream gRPC server in Go for the forwarding interop tests
// (test/upstreams/interop.test.ts): the service interop.Echo served with no
// generated code, over raw bytes, with reflection (grpc-go 1.33 serves only
// v1alpha). Built offline in GOPATH mode from Debian's packages.
//
// Every call: response header x-server: go and x-header-bin (binary),
// trailers x-trailer and x-trailer-bin, header x-deadline-ms (the deadline
// left when the call began, or "none"). Metadata x-status / x-message: end
// with that status after the messages. x-sleep-ms: wait that long (or until
// the call ends) before answering. x-count: how many copies ServerStream
// sends ("endless": every 5 ms until cancelled). Cancelled answers how many
// calls have seen their context cancelled.
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/golang/protobuf/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	dpb "google.golang.org/protobuf/types/descriptorpb"
)

// Raw bytes for interop.Echo, protobuf for the reflection service.
type codec struct{}

func (codec) Marshal(v interface{}) ([]byte, error) {
	if b, ok := v.(*[]byte); ok {
		return *b, nil
	}
	return proto.Marshal(v.(proto.Message))
}
func (codec) Unmarshal(data []byte, v interface{}) error {
	if b, ok := v.(*[]byte); ok {
		*b = append([]byte(nil), data...)
		return nil
	}
	return proto.Unmarshal(data, v.(proto.Message))
}
func (codec) Name() string   { return "proto" }
func (codec) String() string { return "proto" }

var cancelled int64

func first(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func handle(_ interface{}, stream grpc.ServerStream) error {
	ctx := stream.Context()
	method, _ := grpc.MethodFromServerStream(stream)
	md, _ := metadata.FromIncomingContext(ctx)
	defer func() {
		if ctx.Err() == context.Canceled {
			atomic.AddInt64(&cancelled, 1)
		}
	}()
	left := "none"
	if d, ok := ctx.Deadline(); ok {
		left = strconv.FormatInt(time.Until(d).Milliseconds(), 10)
	}
	if method == "/interop.Echo/Cancelled" {
		var in []byte
		if err := stream.RecvMsg(&in); err != nil {
			return err
		}
		out := []byte(strconv.FormatInt(atomic.LoadInt64(&cancelled), 10))
		return stream.SendMsg(&out)
	}
	stream.SetHeader(metadata.Pairs("x-server", "go", "x-deadline-ms", left, "x-header-bin", string([]byte{1, 2, 3})))
	stream.SetTrailer(metadata.Pairs("x-trailer", "done", "x-trailer-bin", string([]byte{0, 255})))
	if ms, err := strconv.Atoi(first(md, "x-sleep-ms")); err == nil {
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	var requests [][]byte
	for {
		var in []byte
		err := stream.RecvMsg(&in)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if method == "/interop.Echo/Bidi" {
			if err := stream.SendMsg(&in); err != nil {
				return err
			}
			continue
		}
		requests = append(requests, in)
	}
	switch method {
	case "/interop.Echo/Unary":
		if len(requests) != 1 {
			return status.Errorf(codes.Internal, "expected one request, got %d", len(requests))
		}
		if err := stream.SendMsg(&requests[0]); err != nil {
			return err
		}
	case "/interop.Echo/ClientStream":
		out := bytes.Join(requests, nil)
		if err := stream.SendMsg(&out); err != nil {
			return err
		}
	case "/interop.Echo/ServerStream":
		if first(md, "x-count") == "endless" {
			for ctx.Err() == nil {
				if err := stream.SendMsg(&requests[0]); err != nil {
					return err
				}
				time.Sleep(5 * time.Millisecond)
			}
			return status.FromContextError(ctx.Err()).Err()
		}
		n, err := strconv.Atoi(first(md, "x-count"))
		if err != nil {
			n = 3
		}
		for i := 0; i < n; i++ {
			if err := stream.SendMsg(&requests[0]); err != nil {
				return err
			}
		}
	}
	if code, err := strconv.Atoi(first(md, "x-status")); err == nil {
		return status.Error(codes.Code(code), first(md, "x-message"))
	}
	return nil
}

// interop.proto, as a descriptor built here instead of by protoc.
func descriptor(methods []string) []byte {
	bytesType := ".interop.Bytes"
	file := &dpb.FileDescriptorProto{
		Name:    proto.String("interop.proto"),
		Package: proto.String("interop"),
		Syntax:  proto.String("proto3"),
		MessageType: []*dpb.DescriptorProto{{
			Name: proto.String("Bytes"),
			Field: []*dpb.FieldDescriptorProto{{
				Name: proto.String("value"), Number: proto.Int32(1),
				Type:  dpb.FieldDescriptorProto_TYPE_BYTES.Enum(),
				Label: dpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
			}},
		}},
	}
	service := &dpb.ServiceDescriptorProto{Name: proto.String("Echo")}
	for _, m := range methods {
		service.Method = append(service.Method, &dpb.MethodDescriptorProto{
			Name: proto.String(m), InputType: &bytesType, OutputType: &bytesType,
			ClientStreaming: proto.Bool(m == "ClientStream" || m == "Bidi"),
			ServerStreaming: proto.Bool(m == "ServerStream" || m == "Bidi"),
		})
	}
	file.Service = []*dpb.ServiceDescriptorProto{service}
	raw, err := proto.Marshal(file)
	if err != nil {
		panic(err)
	}
	var zipped bytes.Buffer
	w := gzip.NewWriter(&zipped)
	w.Write(raw)
	w.Close()
	return zipped.Bytes()
}

func main() {
	methods := []string{"Unary", "ServerStream", "ClientStream", "Bidi", "Cancelled"}
	desc := grpc.ServiceDesc{ServiceName: "interop.Echo", HandlerType: (*interface{})(nil), Metadata: descriptor(methods)}
	for _, m := range methods {
		desc.Streams = append(desc.Streams, grpc.StreamDesc{StreamName: m, Handler: handle, ServerStreams: true, ClientStreams: true})
	}
	server := grpc.NewServer(grpc.CustomCodec(codec{}))
	server.RegisterService(&desc, struct{}{})
	reflection.Register(server)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Printf("listening %d\n", lis.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	server.Serve(lis)
}
