;; A hand-written guest that calls WASI 0.2 sockets directly.
;;
;; A componentize-py guest never gets this far: its CPython has no `socket` module. This
;; component has no language runtime; it imports `wasi:sockets/*` exactly as the host's Linker
;; provides them (`add_wasip2()` in wasmtime 50 offers WASI 0.2.12), so the tests in
;; tests/test_plugin_wasi_sockets.py see what the HOST does when a guest asks for the network.
;;
;; Every export answers `result<_, tuple<step, error-code>>`: ok, or the step the host refused
;; and the WASI `error-code` it answered, passed through untouched.
;;
;; Exports:
;;   tcp-connect(remote)  create-tcp-socket, start-connect; if the host allows that, also wait
;;                        for the handshake (subscribe + block) and finish-connect, as a real
;;                        client does, so a connection would reach the listener
;;   tcp-bind(local)      create-tcp-socket, start-bind (a guest that wants to listen)
;;   udp-bind(local)      create-udp-socket, start-bind (UDP sends need a bound socket)
;;   resolve(name)        ip-name-lookup.resolve-addresses
;;
;; Under openkoi's WASI configuration the host already refuses create-*-socket, so the code past
;; that step does not run today; it is there so that a host that ever hands out a socket shows up
;; as an answer other than the refusal, or as a connection at the test's listener.
;;
;; Memory map of the core module: 16..28 results the host writes (retptr), 32..35 the answer
;; handed back, 4096.. the heap `realloc` hands out (the host writes the `resolve` name there).
(component $sockets
  ;; -- wasi:io: only the resources and the one function the TCP handshake needs ------------
  (import "wasi:io/poll@0.2.12" (instance $poll
    (export "pollable" (type $pollable (sub resource)))
    (type $block (func (param "self" (borrow $pollable))))
    (export "[method]pollable.block" (func (type $block)))
  ))
  (alias export $poll "pollable" (type $pollable))
  (import "wasi:io/streams@0.2.12" (instance $streams
    (export "input-stream" (type (sub resource)))
    (export "output-stream" (type (sub resource)))
  ))
  (alias export $streams "input-stream" (type $input-stream))
  (alias export $streams "output-stream" (type $output-stream))

  ;; -- wasi:sockets/network: the capability resource and the shared types --------------------
  (import "wasi:sockets/network@0.2.12" (instance $network
    (export "network" (type (sub resource)))
    ;; discriminants: unknown 0, access-denied 1, not-supported 2, invalid-argument 3,
    ;; out-of-memory 4, timeout 5, concurrency-conflict 6, not-in-progress 7, would-block 8,
    ;; invalid-state 9, new-socket-limit 10, address-not-bindable 11, address-in-use 12,
    ;; remote-unreachable 13, connection-refused 14, connection-reset 15,
    ;; connection-aborted 16, datagram-too-large 17, name-unresolvable 18,
    ;; temporary-resolver-failure 19, permanent-resolver-failure 20
    (type $e (enum "unknown" "access-denied" "not-supported" "invalid-argument"
      "out-of-memory" "timeout" "concurrency-conflict" "not-in-progress" "would-block"
      "invalid-state" "new-socket-limit" "address-not-bindable" "address-in-use"
      "remote-unreachable" "connection-refused" "connection-reset" "connection-aborted"
      "datagram-too-large" "name-unresolvable" "temporary-resolver-failure"
      "permanent-resolver-failure"))
    (export "error-code" (type (eq $e)))
    (type $f (enum "ipv4" "ipv6"))
    (export "ip-address-family" (type (eq $f)))
    (type $a4 (tuple u8 u8 u8 u8))
    (export "ipv4-address" (type $ipv4-address (eq $a4)))
    (type $a6 (tuple u16 u16 u16 u16 u16 u16 u16 u16))
    (export "ipv6-address" (type $ipv6-address (eq $a6)))
    (type $s4 (record (field "port" u16) (field "address" $ipv4-address)))
    (export "ipv4-socket-address" (type $ipv4-socket-address (eq $s4)))
    (type $s6 (record (field "port" u16) (field "flow-info" u32)
      (field "address" $ipv6-address) (field "scope-id" u32)))
    (export "ipv6-socket-address" (type $ipv6-socket-address (eq $s6)))
    (type $sa (variant (case "ipv4" $ipv4-socket-address) (case "ipv6" $ipv6-socket-address)))
    (export "ip-socket-address" (type (eq $sa)))
  ))
  (alias export $network "network" (type $network-t))
  (alias export $network "error-code" (type $error-code))
  (alias export $network "ip-address-family" (type $ip-address-family))
  (alias export $network "ip-socket-address" (type $ip-socket-address))

  (import "wasi:sockets/instance-network@0.2.12" (instance $instance-network
    (alias outer $sockets $network-t (type $network))
    (type $f (func (result (own $network))))
    (export "instance-network" (func (type $f)))
  ))

  ;; -- TCP -------------------------------------------------------------------------------------
  (import "wasi:sockets/tcp@0.2.12" (instance $tcp
    (alias outer $sockets $network-t (type $network))
    (alias outer $sockets $error-code (type $error-code))
    (alias outer $sockets $ip-socket-address (type $ip-socket-address))
    (alias outer $sockets $pollable (type $pollable))
    (alias outer $sockets $input-stream (type $input-stream))
    (alias outer $sockets $output-stream (type $output-stream))
    (export "tcp-socket" (type $tcp-socket (sub resource)))
    (type $bind (func (param "self" (borrow $tcp-socket)) (param "network" (borrow $network))
      (param "local-address" $ip-socket-address) (result (result (error $error-code)))))
    (export "[method]tcp-socket.start-bind" (func (type $bind)))
    (type $connect (func (param "self" (borrow $tcp-socket)) (param "network" (borrow $network))
      (param "remote-address" $ip-socket-address) (result (result (error $error-code)))))
    (export "[method]tcp-socket.start-connect" (func (type $connect)))
    (type $pair (tuple (own $input-stream) (own $output-stream)))
    (type $finish (func (param "self" (borrow $tcp-socket))
      (result (result $pair (error $error-code)))))
    (export "[method]tcp-socket.finish-connect" (func (type $finish)))
    (type $subscribe (func (param "self" (borrow $tcp-socket)) (result (own $pollable))))
    (export "[method]tcp-socket.subscribe" (func (type $subscribe)))
  ))
  (alias export $tcp "tcp-socket" (type $tcp-socket))

  (import "wasi:sockets/tcp-create-socket@0.2.12" (instance $tcp-create-socket
    (alias outer $sockets $error-code (type $error-code))
    (alias outer $sockets $ip-address-family (type $ip-address-family))
    (alias outer $sockets $tcp-socket (type $tcp-socket))
    (type $f (func (param "address-family" $ip-address-family)
      (result (result (own $tcp-socket) (error $error-code)))))
    (export "create-tcp-socket" (func (type $f)))
  ))

  ;; -- UDP -------------------------------------------------------------------------------------
  (import "wasi:sockets/udp@0.2.12" (instance $udp
    (alias outer $sockets $network-t (type $network))
    (alias outer $sockets $error-code (type $error-code))
    (alias outer $sockets $ip-socket-address (type $ip-socket-address))
    (export "udp-socket" (type $udp-socket (sub resource)))
    (type $bind (func (param "self" (borrow $udp-socket)) (param "network" (borrow $network))
      (param "local-address" $ip-socket-address) (result (result (error $error-code)))))
    (export "[method]udp-socket.start-bind" (func (type $bind)))
  ))
  (alias export $udp "udp-socket" (type $udp-socket))

  (import "wasi:sockets/udp-create-socket@0.2.12" (instance $udp-create-socket
    (alias outer $sockets $error-code (type $error-code))
    (alias outer $sockets $ip-address-family (type $ip-address-family))
    (alias outer $sockets $udp-socket (type $udp-socket))
    (type $f (func (param "address-family" $ip-address-family)
      (result (result (own $udp-socket) (error $error-code)))))
    (export "create-udp-socket" (func (type $f)))
  ))

  ;; -- name lookup -----------------------------------------------------------------------------
  (import "wasi:sockets/ip-name-lookup@0.2.12" (instance $ip-name-lookup
    (alias outer $sockets $network-t (type $network))
    (alias outer $sockets $error-code (type $error-code))
    (export "resolve-address-stream" (type $stream (sub resource)))
    (type $f (func (param "network" (borrow $network)) (param "name" string)
      (result (result (own $stream) (error $error-code)))))
    (export "resolve-addresses" (func (type $f)))
  ))
  (alias export $ip-name-lookup "resolve-address-stream" (type $resolve-address-stream))

  ;; -- memory and a bump allocator -------------------------------------------------------------
  (core module $Libc
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 4096))
    ;; canonical ABI realloc, for the host to pass `resolve` its name; only ever asked for fresh
    ;; blocks (old pointer 0)
    (func (export "realloc") (param $old i32) (param $old-size i32) (param $align i32)
      (param $size i32) (result i32)
      (local $ptr i32) (local $end i32)
      (if (local.get $old) (then unreachable))
      (local.set $ptr
        (i32.and
          (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get $align))))
      (local.set $end (i32.add (local.get $ptr) (local.get $size)))
      (if (i32.lt_u (local.get $end) (local.get $ptr)) (then unreachable))
      (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
        (then
          (if (i32.eq
                (memory.grow
                  (i32.add
                    (i32.shr_u
                      (i32.sub (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
                      (i32.const 16))
                    (i32.const 1)))
                (i32.const -1))
            (then unreachable))))
      (global.set $heap (local.get $end))
      (local.get $ptr))
  )
  (core instance $libc (instantiate $Libc))
  (alias core export $libc "memory" (core memory $mem))
  (alias core export $libc "realloc" (core func $realloc))

  ;; -- the imports, lowered to core functions ----------------------------------------------------
  (alias export $instance-network "instance-network" (func $instance-network-f))
  (alias export $tcp-create-socket "create-tcp-socket" (func $create-tcp-socket-f))
  (alias export $tcp "[method]tcp-socket.start-bind" (func $tcp-start-bind-f))
  (alias export $tcp "[method]tcp-socket.start-connect" (func $tcp-start-connect-f))
  (alias export $tcp "[method]tcp-socket.finish-connect" (func $tcp-finish-connect-f))
  (alias export $tcp "[method]tcp-socket.subscribe" (func $tcp-subscribe-f))
  (alias export $poll "[method]pollable.block" (func $pollable-block-f))
  (alias export $udp-create-socket "create-udp-socket" (func $create-udp-socket-f))
  (alias export $udp "[method]udp-socket.start-bind" (func $udp-start-bind-f))
  (alias export $ip-name-lookup "resolve-addresses" (func $resolve-addresses-f))

  ;; A result of two flat values or more comes back through memory (a "retptr" parameter).
  (core func $instance-network-c (canon lower (func $instance-network-f)))
  (core func $create-tcp-socket-c (canon lower (func $create-tcp-socket-f) (memory $mem)))
  (core func $tcp-start-bind-c (canon lower (func $tcp-start-bind-f) (memory $mem)))
  (core func $tcp-start-connect-c (canon lower (func $tcp-start-connect-f) (memory $mem)))
  (core func $tcp-finish-connect-c (canon lower (func $tcp-finish-connect-f) (memory $mem)))
  (core func $tcp-subscribe-c (canon lower (func $tcp-subscribe-f)))
  (core func $pollable-block-c (canon lower (func $pollable-block-f)))
  (core func $create-udp-socket-c (canon lower (func $create-udp-socket-f) (memory $mem)))
  (core func $udp-start-bind-c (canon lower (func $udp-start-bind-f) (memory $mem)))
  (core func $resolve-addresses-c
    (canon lower (func $resolve-addresses-f) (memory $mem) (realloc $realloc) string-encoding=utf8))
  (core func $drop-network-c (canon resource.drop $network-t))
  (core func $drop-tcp-socket-c (canon resource.drop $tcp-socket))
  (core func $drop-udp-socket-c (canon resource.drop $udp-socket))
  (core func $drop-pollable-c (canon resource.drop $pollable))
  (core func $drop-input-stream-c (canon resource.drop $input-stream))
  (core func $drop-output-stream-c (canon resource.drop $output-stream))
  (core func $drop-resolve-address-stream-c (canon resource.drop $resolve-address-stream))

  ;; -- the guest's code --------------------------------------------------------------------------
  ;; An ip-socket-address flattens to 12 i32: the case (0 ipv4, 1 ipv6), then the payload
  ;; (ipv4: port, 4 octets; ipv6: port, flow-info, 8 segments, scope-id). Its case is also the
  ;; ip-address-family to create the socket with.
  (core module $Main
    (import "libc" "memory" (memory 1))
    (import "wasi" "instance-network" (func $instance-network (result i32)))
    (import "wasi" "create-tcp-socket" (func $create-tcp-socket (param i32 i32)))
    (import "wasi" "tcp-start-bind" (func $tcp-start-bind
      (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
    (import "wasi" "tcp-start-connect" (func $tcp-start-connect
      (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
    (import "wasi" "tcp-finish-connect" (func $tcp-finish-connect (param i32 i32)))
    (import "wasi" "tcp-subscribe" (func $tcp-subscribe (param i32) (result i32)))
    (import "wasi" "pollable-block" (func $pollable-block (param i32)))
    (import "wasi" "create-udp-socket" (func $create-udp-socket (param i32 i32)))
    (import "wasi" "udp-start-bind" (func $udp-start-bind
      (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
    (import "wasi" "resolve-addresses" (func $resolve-addresses (param i32 i32 i32 i32)))
    (import "wasi" "drop-network" (func $drop-network (param i32)))
    (import "wasi" "drop-tcp-socket" (func $drop-tcp-socket (param i32)))
    (import "wasi" "drop-udp-socket" (func $drop-udp-socket (param i32)))
    (import "wasi" "drop-pollable" (func $drop-pollable (param i32)))
    (import "wasi" "drop-input-stream" (func $drop-input-stream (param i32)))
    (import "wasi" "drop-output-stream" (func $drop-output-stream (param i32)))
    (import "wasi" "drop-resolve-address-stream" (func $drop-resolve-address-stream (param i32)))

    ;; The steps, numbered as the exported `step` enum.
    (global $create-socket i32 (i32.const 0))
    (global $start-connect i32 (i32.const 1))
    (global $finish-connect i32 (i32.const 2))
    (global $start-bind i32 (i32.const 3))
    (global $resolve-addresses-step i32 (i32.const 4))

    ;; The export's `result<_, tuple<step, error-code>>` at 32: case byte, step byte, code byte.
    (func $answer (param $is-err i32) (param $step i32) (param $code i32) (result i32)
      (i32.store8 (i32.const 32) (local.get $is-err))
      (i32.store8 (i32.const 33) (local.get $step))
      (i32.store8 (i32.const 34) (local.get $code))
      (i32.const 32))

    ;; Results the host writes at 16 (retptr):
    ;;   result<_, error-code>               case byte at 16, error-code byte at 17
    ;;   result<own<T>, error-code>          case byte at 16, the handle (i32) or code at 20
    ;;   result<tuple<own, own>, error-code> case byte at 16, handles at 20 and 24, or code at 20

    (func (export "tcp-connect")
      (param $case i32) (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
      (local $socket i32) (local $network i32) (local $pollable i32)
      (local $is-err i32) (local $step i32) (local $code i32)
      (call $create-tcp-socket (local.get $case) (i32.const 16))
      (if (i32.load8_u (i32.const 16))
        (then (return
          (call $answer (i32.const 1) (global.get $create-socket) (i32.load8_u (i32.const 20))))))
      (local.set $socket (i32.load (i32.const 20)))
      (local.set $network (call $instance-network))
      (call $tcp-start-connect (local.get $socket) (local.get $network)
        (local.get $case) (local.get 1) (local.get 2) (local.get 3) (local.get 4)
        (local.get 5) (local.get 6) (local.get 7) (local.get 8) (local.get 9) (local.get 10)
        (local.get 11) (i32.const 16))
      (local.set $is-err (i32.load8_u (i32.const 16)))
      (local.set $step (global.get $start-connect))
      (local.set $code (i32.load8_u (i32.const 17)))
      (if (i32.eqz (local.get $is-err))
        (then
          ;; the host let the connect start: finish the handshake like any client would
          (local.set $pollable (call $tcp-subscribe (local.get $socket)))
          (call $pollable-block (local.get $pollable))
          (call $drop-pollable (local.get $pollable))
          (call $tcp-finish-connect (local.get $socket) (i32.const 16))
          (local.set $is-err (i32.load8_u (i32.const 16)))
          (local.set $step (global.get $finish-connect))
          (local.set $code (i32.load8_u (i32.const 20)))
          (if (i32.eqz (local.get $is-err))
            (then
              (call $drop-input-stream (i32.load (i32.const 20)))
              (call $drop-output-stream (i32.load (i32.const 24)))))))
      (call $drop-tcp-socket (local.get $socket))
      (call $drop-network (local.get $network))
      (call $answer (local.get $is-err) (local.get $step) (local.get $code)))

    (func (export "tcp-bind")
      (param $case i32) (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
      (local $socket i32) (local $network i32)
      (call $create-tcp-socket (local.get $case) (i32.const 16))
      (if (i32.load8_u (i32.const 16))
        (then (return
          (call $answer (i32.const 1) (global.get $create-socket) (i32.load8_u (i32.const 20))))))
      (local.set $socket (i32.load (i32.const 20)))
      (local.set $network (call $instance-network))
      (call $tcp-start-bind (local.get $socket) (local.get $network)
        (local.get $case) (local.get 1) (local.get 2) (local.get 3) (local.get 4)
        (local.get 5) (local.get 6) (local.get 7) (local.get 8) (local.get 9) (local.get 10)
        (local.get 11) (i32.const 16))
      (call $drop-tcp-socket (local.get $socket))
      (call $drop-network (local.get $network))
      (call $answer
        (i32.load8_u (i32.const 16)) (global.get $start-bind) (i32.load8_u (i32.const 17))))

    (func (export "udp-bind")
      (param $case i32) (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
      (local $socket i32) (local $network i32)
      (call $create-udp-socket (local.get $case) (i32.const 16))
      (if (i32.load8_u (i32.const 16))
        (then (return
          (call $answer (i32.const 1) (global.get $create-socket) (i32.load8_u (i32.const 20))))))
      (local.set $socket (i32.load (i32.const 20)))
      (local.set $network (call $instance-network))
      (call $udp-start-bind (local.get $socket) (local.get $network)
        (local.get $case) (local.get 1) (local.get 2) (local.get 3) (local.get 4)
        (local.get 5) (local.get 6) (local.get 7) (local.get 8) (local.get 9) (local.get 10)
        (local.get 11) (i32.const 16))
      (call $drop-udp-socket (local.get $socket))
      (call $drop-network (local.get $network))
      (call $answer
        (i32.load8_u (i32.const 16)) (global.get $start-bind) (i32.load8_u (i32.const 17))))

    (func (export "resolve") (param $name i32) (param $len i32) (result i32)
      (local $network i32)
      (local.set $network (call $instance-network))
      (call $resolve-addresses (local.get $network) (local.get $name) (local.get $len)
        (i32.const 16))
      (if (i32.eqz (i32.load8_u (i32.const 16)))
        (then (call $drop-resolve-address-stream (i32.load (i32.const 20)))))
      (call $drop-network (local.get $network))
      (call $answer (i32.load8_u (i32.const 16)) (global.get $resolve-addresses-step)
        (i32.load8_u (i32.const 20))))
  )
  (core instance $main (instantiate $Main
    (with "libc" (instance $libc))
    (with "wasi" (instance
      (export "instance-network" (func $instance-network-c))
      (export "create-tcp-socket" (func $create-tcp-socket-c))
      (export "tcp-start-bind" (func $tcp-start-bind-c))
      (export "tcp-start-connect" (func $tcp-start-connect-c))
      (export "tcp-finish-connect" (func $tcp-finish-connect-c))
      (export "tcp-subscribe" (func $tcp-subscribe-c))
      (export "pollable-block" (func $pollable-block-c))
      (export "create-udp-socket" (func $create-udp-socket-c))
      (export "udp-start-bind" (func $udp-start-bind-c))
      (export "resolve-addresses" (func $resolve-addresses-c))
      (export "drop-network" (func $drop-network-c))
      (export "drop-tcp-socket" (func $drop-tcp-socket-c))
      (export "drop-udp-socket" (func $drop-udp-socket-c))
      (export "drop-pollable" (func $drop-pollable-c))
      (export "drop-input-stream" (func $drop-input-stream-c))
      (export "drop-output-stream" (func $drop-output-stream-c))
      (export "drop-resolve-address-stream" (func $drop-resolve-address-stream-c))
    ))
  ))

  ;; -- the exports: each answers ok, or the step the host refused and the host's error-code ---
  (type $step-def
    (enum "create-socket" "start-connect" "finish-connect" "start-bind" "resolve-addresses"))
  (export $step "step" (type $step-def))
  (type $refusal (tuple $step $error-code))
  (type $by-address
    (func (param "address" $ip-socket-address) (result (result (error $refusal)))))
  (type $by-name (func (param "name" string) (result (result (error $refusal)))))
  (func (export "tcp-connect") (type $by-address)
    (canon lift (core func $main "tcp-connect") (memory $mem)))
  (func (export "tcp-bind") (type $by-address)
    (canon lift (core func $main "tcp-bind") (memory $mem)))
  (func (export "udp-bind") (type $by-address)
    (canon lift (core func $main "udp-bind") (memory $mem)))
  (func (export "resolve") (type $by-name)
    (canon lift (core func $main "resolve") (memory $mem) (realloc $realloc) string-encoding=utf8))
)
