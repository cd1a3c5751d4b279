/*
 * A real HAPI FHIR R4 server whose IHE BALP interceptor sends its audit trail to Guetteur.
 *
 * Used by tests/integration/test_hapi_balp.py, which compiles it with javac against the jars
 * streams/stack/maven/hapi.pom.xml resolves. Nothing here is Guetteur's: it is what a hospital's
 * HAPI server would run, with HAPI's own BalpAuditCaptureInterceptor and its asynchronous
 * FHIR-client sink, which POSTs each batch of AuditEvents as a transaction Bundle to [base].
 *
 *   java -cp <jars>:<classes> BalpServer <port, 0 for any> <audit repository base URL>
 *
 * The bearer token for the audit repository is read from BALP_BEARER_TOKEN. The user is who the
 * X-User request header names (Practitioner/<X-User>): a stand-in for the server's own login.
 * Prints "ready <base URL>" once it listens, "audit-event <JSON>" for each AuditEvent BALP
 * writes and "audit-repository-answered <status>" for each answer to the sink's POSTs; SIGTERM
 * stops it.
 */

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.client.api.IClientInterceptor;
import ca.uhn.fhir.rest.client.api.IHttpRequest;
import ca.uhn.fhir.rest.client.api.IHttpResponse;
import ca.uhn.fhir.rest.client.interceptor.BearerTokenAuthInterceptor;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.provider.HashMapResourceProvider;
import ca.uhn.fhir.storage.interceptor.balp.AsyncMemoryQueueBackedFhirClientBalpSink;
import ca.uhn.fhir.storage.interceptor.balp.BalpAuditCaptureInterceptor;
import ca.uhn.fhir.storage.interceptor.balp.IBalpAuditContextServices;
import ca.uhn.fhir.storage.interceptor.balp.IBalpAuditEventSink;
import java.net.InetSocketAddress;
import java.util.List;
import org.eclipse.jetty.ee10.servlet.ServletContextHandler;
import org.eclipse.jetty.ee10.servlet.ServletHolder;
import org.eclipse.jetty.server.NetworkConnector;
import org.eclipse.jetty.server.Server;
import org.hl7.fhir.r4.model.AuditEvent;
import org.hl7.fhir.r4.model.Observation;
import org.hl7.fhir.r4.model.Patient;
import org.hl7.fhir.r4.model.Reference;

public final class BalpServer {

    /** Who did it: the user the request names, and this test's client application. */
    static final class HeaderUser implements IBalpAuditContextServices {
        @Override
        public Reference getAgentClientWho(RequestDetails request) {
            return new Reference().setDisplay("guetteur-balp-test-client");
        }

        @Override
        public Reference getAgentUserWho(RequestDetails request) {
            String user = request.getHeader("X-User");
            return new Reference("Practitioner/" + (user == null ? "anonymous" : user));
        }
    }

    /** One stdout line per answer of the audit repository, for the test to wait on. */
    static final class AnswerPrinter implements IClientInterceptor {
        @Override
        public void interceptRequest(IHttpRequest request) {}

        @Override
        public void interceptResponse(IHttpResponse response) {
            synchronized (System.out) {
                System.out.println("audit-repository-answered " + response.getStatus());
                System.out.flush();
            }
        }
    }

    /** Prints each AuditEvent BALP writes (one JSON line) before HAPI's own sink sends it. */
    static final class Printed implements IBalpAuditEventSink {
        private final FhirContext fhir;
        private final IBalpAuditEventSink sink;

        Printed(FhirContext fhir, IBalpAuditEventSink sink) {
            this.fhir = fhir;
            this.sink = sink;
        }

        @Override
        public void recordAuditEvent(AuditEvent event) {
            String json = fhir.newJsonParser().encodeResourceToString(event);
            synchronized (System.out) {
                System.out.println("audit-event " + json);
                System.out.flush();
            }
            sink.recordAuditEvent(event);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: BalpServer <port> <audit repository base URL>");
            System.exit(2);
        }
        int port = Integer.parseInt(args[0]);
        String repository = args[1];
        String token = System.getenv("BALP_BEARER_TOKEN");
        if (token == null || token.isEmpty()) {
            System.err.println("BALP_BEARER_TOKEN is not set");
            System.exit(2);
        }

        FhirContext fhir = FhirContext.forR4();
        // HAPI's defaults, as a deployment would leave them: its client first GETs
        // [base]/metadata (Guetteur serves a CapabilityStatement there), then posts.
        FhirContext auditFhir = FhirContext.forR4();
        List<Object> clientInterceptors =
                List.of(new BearerTokenAuthInterceptor(token), new AnswerPrinter());
        AsyncMemoryQueueBackedFhirClientBalpSink sink =
                new AsyncMemoryQueueBackedFhirClientBalpSink(auditFhir, repository, clientInterceptors);

        RestfulServer restful = new RestfulServer(fhir);
        restful.registerProvider(new HashMapResourceProvider<>(fhir, Patient.class));
        restful.registerProvider(new HashMapResourceProvider<>(fhir, Observation.class));
        restful.registerInterceptor(
                new BalpAuditCaptureInterceptor(new Printed(fhir, sink), new HeaderUser()));

        Server server = new Server(new InetSocketAddress("127.0.0.1", port));
        ServletContextHandler context = new ServletContextHandler();
        context.setContextPath("/");
        context.addServlet(new ServletHolder(restful), "/fhir/*");
        server.setHandler(context);
        server.setStopAtShutdown(true);
        Runtime.getRuntime().addShutdownHook(new Thread(sink::stop, "balp-sink-stop"));
        server.start();

        int bound = ((NetworkConnector) server.getConnectors()[0]).getLocalPort();
        System.out.println("ready http://127.0.0.1:" + bound + "/fhir");
        System.out.flush();
        server.join();
    }
}
