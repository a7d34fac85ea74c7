// Package flow is the login state machine of the browser: the authorization endpoint, the trip
// to the upstream and its callback, role choice and invite code, consent, the student picker,
// a diary's link intents, and logout.
//
// Every step is bound to the browser (a login request carries the hash of its browser id) and,
// after the upstream, to the new browser session. The states of a diary's login:
//
//	GET /oauth2/authorize ──(live session, no prompt=login, max_age kept)──────────────┐
//	        │ no session                                                                │
//	        ▼                                                                           │
//	login request ──► start page ──► /login/{connector} ──► upstream (ESIA)            │
//	   (idp=… skips the start page)        (ESIA's logout first when a fresh login      │
//	                                        is asked for or a logout is pending)        │
//	                                                │                                   │
//	                                                ▼                                   │
//	                    /{connector}/callback: one transaction writes the account,      │
//	                    the session, the SNILS links, a link intent's links, and —      │
//	                    when nothing else is needed — the code                          │
//	                                                │                                   │
//	                                                ▼                                   ▼
//	                                      decide (the next step) ◄──── /oauth2/authorize/resume
//	          ┌──────────────┬──────────────┬───────┴──────┬────────────────┐
//	          ▼              ▼              ▼              ▼                ▼
//	     role + code      consent        picker          code       OAuth error / page
//	     /link/role      POST /consent  POST /select   to the diary  (prompt=none, a refusal)
//	     /link/code           │              │
//	          └──────────────►┴──────────────┴──► /oauth2/authorize/resume
//
// decide is pure: it reads only what it is given, and its table test covers every branch. A
// diary's link intent (/link/{intent}) and a login from the broker's own start page
// (/account/login) go through the same upstream trip and callback, then to the intent's page or
// the account page instead of decide. Logout (/oauth2/logout) ends the session, queues the
// back-channel logouts, and goes through ESIA's logout before /oauth2/logout/done finishes it.
package flow
