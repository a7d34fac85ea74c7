// Package ops is what running the broker needs around it: its logger, its traces, the listening
// socket (systemd socket activation), and the metrics and profiler listeners.
package ops

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/web"
)

// NewTracer is the process's OpenTelemetry tracer: spans exported by OTLP/HTTP to
// telemetry.otlp_endpoint, or none when it is empty. shutdown flushes what is buffered.
func NewTracer(ctx context.Context, t config.Telemetry, log *slog.Logger) (tp trace.TracerProvider, shutdown func(), err error) {
	if t.OTLPEndpoint == "" {
		return noop.NewTracerProvider(), func() {}, nil
	}
	// The collector's base URL gets OTLP's traces path, as OTEL_EXPORTER_OTLP_ENDPOINT does; a
	// URL with a path is taken as it is.
	u, err := url.Parse(t.OTLPEndpoint)
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry.otlp_endpoint: %w", err)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u.String()))
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry.otlp_endpoint: %w", err)
	}
	res := resource.NewSchemaless(semconv.ServiceName("esia-broker"))
	sdk := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(web.RequestIDProcessor{}), sdktrace.WithBatcher(exp), sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(t.SampleRatio))))
	log.Info("tracing to an OTLP collector", "endpoint", t.OTLPEndpoint, "sample_ratio", t.SampleRatio)
	return sdk, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := sdk.Shutdown(sctx); err != nil {
			log.Warn("flush traces", "err", err)
		}
	}, nil
}
