/*
 * mod_rater_probe: a MEASURING PROTOTYPE, not the product (see README.md here).
 *
 * What would the switch pay per rated call if the rater's two touch points lived in a
 * FreeSWITCH module instead of on Event Socket connections?
 *
 *   rater_ask <host:port> <context>
 *       dialplan application; in the channel's own thread, one UDP datagram
 *           "ask <uuid> <rater_account> <rater_destination> <rater_direction> <caller>\n"
 *       to host:port, then waits up to 1 s for the reply:
 *           "ok <max_seconds> <account>"  sets rater_max_seconds, rater_account and
 *                                         execute_on_answer (no events), then transfers
 *                                         the call to <rater_destination> XML <context>;
 *           "refuse <CAUSE>"              hangs the call up with that cause;
 *       anything else, or no reply: returns, the dialplan goes on (its fallback).
 *
 *   event hooks (on when the global variable rater_probe_events=<host:port> is set at load)
 *       CHANNEL_ANSWER and CHANNEL_HANGUP_COMPLETE of channels with rater_account set send
 *           "answer <uuid> <answered_usec>\n"
 *           "hangup <uuid> <answered_usec> <hangup_usec> <billmsec> <cause>\n"
 *       to host:port: a stand-in for the daemon's Event Socket subscription.
 *
 * Fields are space-separated; an empty field is sent as "-".
 */
#include <switch.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#define ASK_TIMEOUT_MS 1000
#define DATAGRAM_MAX 512

SWITCH_MODULE_LOAD_FUNCTION(mod_rater_probe_load);
SWITCH_MODULE_SHUTDOWN_FUNCTION(mod_rater_probe_shutdown);
SWITCH_MODULE_DEFINITION(mod_rater_probe, mod_rater_probe_load, mod_rater_probe_shutdown, NULL);

static struct {
	int event_fd;                   /* one shared socket for event datagrams; -1 when off */
	struct sockaddr_in event_addr;
} globals = { .event_fd = -1 };

/* "host:port" (IPv4 literal) -> sockaddr; SWITCH_FALSE when it does not parse. */
static switch_bool_t parse_addr(const char *text, struct sockaddr_in *out)
{
	char host[64];
	const char *colon = text ? strrchr(text, ':') : NULL;
	int port;

	if (!colon || colon == text || (size_t) (colon - text) >= sizeof(host)) {
		return SWITCH_FALSE;
	}
	memcpy(host, text, colon - text);
	host[colon - text] = '\0';
	port = atoi(colon + 1);
	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	out->sin_port = htons((uint16_t) port);
	return port > 0 && port < 65536 && inet_pton(AF_INET, host, &out->sin_addr) == 1;
}

static const char *or_dash(const char *s)
{
	return zstr(s) ? "-" : s;
}

/* Send the question on a socket of this call's own and wait for one reply; returns the
 * reply's length, or -1 (error, timeout). A connected UDP socket only receives from the
 * address it asked, so replies cannot cross between calls. */
static int ask(const struct sockaddr_in *to, const char *question, char *reply, size_t size)
{
	struct pollfd pfd;
	int fd, n = -1;

	if ((fd = socket(AF_INET, SOCK_DGRAM, 0)) < 0) {
		return -1;
	}
	if (connect(fd, (const struct sockaddr *) to, sizeof(*to)) == 0
		&& send(fd, question, strlen(question), 0) >= 0) {
		pfd.fd = fd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, ASK_TIMEOUT_MS) == 1) {
			n = (int) recv(fd, reply, size - 1, 0);
		}
	}
	close(fd);
	if (n >= 0) {
		reply[n] = '\0';
	}
	return n;
}

SWITCH_STANDARD_APP(rater_ask_function)
{
	switch_channel_t *channel = switch_core_session_get_channel(session);
	switch_caller_profile_t *profile = switch_channel_get_caller_profile(channel);
	char *argv[3] = { 0 }, *reply_argv[4] = { 0 };
	char question[DATAGRAM_MAX], reply[DATAGRAM_MAX];
	const char *destination = switch_channel_get_variable(channel, "rater_destination");
	struct sockaddr_in to;
	char *args;
	int argc;

	args = switch_core_session_strdup(session, switch_str_nil(data));
	argc = switch_separate_string(args, ' ', argv, 3);
	if (argc < 2 || !parse_addr(argv[0], &to)) {
		switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_ERROR,
						  "usage: rater_ask <ipv4:port> <context>\n");
		return;
	}
	switch_snprintf(question, sizeof(question), "ask %s %s %s %s %s\n",
					switch_core_session_get_uuid(session),
					or_dash(switch_channel_get_variable(channel, "rater_account")),
					or_dash(destination),
					or_dash(switch_channel_get_variable(channel, "rater_direction")),
					or_dash(profile ? profile->caller_id_number : NULL));
	if (ask(&to, question, reply, sizeof(reply)) < 0) {
		switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_WARNING,
						  "rater_ask: no reply from %s; the dialplan goes on\n", argv[0]);
		return;
	}
	reply[strcspn(reply, "\r\n")] = '\0';
	argc = switch_separate_string(reply, ' ', reply_argv, 4);
	if (argc >= 3 && !strcmp(reply_argv[0], "ok") && !zstr(destination)) {
		char on_answer[64];

		switch_snprintf(on_answer, sizeof(on_answer), "sched_hangup +%d ALLOTTED_TIMEOUT",
						atoi(reply_argv[1]) + 1);
		/* switch_channel_set_variable fires no event (the set application would fire
		 * CHANNEL_EXECUTE and EXECUTE_COMPLETE, each carrying every variable) */
		switch_channel_set_variable(channel, "rater_max_seconds", reply_argv[1]);
		switch_channel_set_variable(channel, "rater_account", reply_argv[2]);
		switch_channel_set_variable(channel, "execute_on_answer", on_answer);
		switch_ivr_session_transfer(session, destination, "XML", argv[1]);
	} else if (argc >= 2 && !strcmp(reply_argv[0], "refuse")) {
		switch_channel_hangup(channel, switch_channel_str2cause(reply_argv[1]));
	} else {
		switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_WARNING,
						  "rater_ask: unexpected reply; the dialplan goes on\n");
	}
}

/* Runs in the event dispatch thread for every CHANNEL_ANSWER / CHANNEL_HANGUP_COMPLETE;
 * only rated legs (rater_account set) cost a datagram. */
static void on_channel_event(switch_event_t *event)
{
	char line[DATAGRAM_MAX];
	const char *uuid = switch_event_get_header(event, "Unique-ID");
	const char *answered = switch_event_get_header(event, "Caller-Channel-Answered-Time");

	if (globals.event_fd < 0 || zstr(switch_event_get_header(event, "variable_rater_account"))) {
		return;
	}
	if (event->event_id == SWITCH_EVENT_CHANNEL_ANSWER) {
		switch_snprintf(line, sizeof(line), "answer %s %s\n", or_dash(uuid), or_dash(answered));
	} else {
		switch_snprintf(line, sizeof(line), "hangup %s %s %s %s %s\n", or_dash(uuid),
						or_dash(answered),
						or_dash(switch_event_get_header(event, "Caller-Channel-Hangup-Time")),
						or_dash(switch_event_get_header(event, "variable_billmsec")),
						or_dash(switch_event_get_header(event, "Hangup-Cause")));
	}
	/* best effort, like any datagram: a lost one is the daemon's to notice */
	(void) sendto(globals.event_fd, line, strlen(line), MSG_DONTWAIT,
				  (const struct sockaddr *) &globals.event_addr, sizeof(globals.event_addr));
}

SWITCH_MODULE_LOAD_FUNCTION(mod_rater_probe_load)
{
	switch_application_interface_t *app_interface;
	char *events = switch_core_get_variable_pdup("rater_probe_events", pool);

	*module_interface = switch_loadable_module_create_module_interface(pool, modname);
	SWITCH_ADD_APP(app_interface, "rater_ask", "ask a rater over UDP (prototype)",
				   "Ask a rater over UDP; admit (variables + transfer) or refuse.",
				   rater_ask_function, "<ipv4:port> <context>", SAF_NONE);

	globals.event_fd = -1;
	if (!zstr(events) && strcmp(events, "off")) {
		if (!parse_addr(events, &globals.event_addr)) {
			switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_ERROR,
							  "rater_probe_events=%s is not <ipv4:port>\n", events);
			return SWITCH_STATUS_FALSE;
		}
		if ((globals.event_fd = socket(AF_INET, SOCK_DGRAM, 0)) < 0
			|| switch_event_bind(modname, SWITCH_EVENT_CHANNEL_ANSWER, SWITCH_EVENT_SUBCLASS_ANY,
								 on_channel_event, NULL) != SWITCH_STATUS_SUCCESS
			|| switch_event_bind(modname, SWITCH_EVENT_CHANNEL_HANGUP_COMPLETE,
								 SWITCH_EVENT_SUBCLASS_ANY, on_channel_event, NULL)
			   != SWITCH_STATUS_SUCCESS) {
			switch_event_unbind_callback(on_channel_event);
			if (globals.event_fd >= 0) {
				close(globals.event_fd);
				globals.event_fd = -1;
			}
			return SWITCH_STATUS_FALSE;
		}
		switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_INFO, "rater_probe: events to %s\n", events);
	}
	return SWITCH_STATUS_SUCCESS;
}

SWITCH_MODULE_SHUTDOWN_FUNCTION(mod_rater_probe_shutdown)
{
	/* unbinding waits for a callback under way (the event system's write lock) */
	switch_event_unbind_callback(on_channel_event);
	if (globals.event_fd >= 0) {
		close(globals.event_fd);
		globals.event_fd = -1;
	}
	return SWITCH_STATUS_SUCCESS;
}
