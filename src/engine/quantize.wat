;; int8 weights for q8 graphs (quantize.ts): the per-row scales, the rounding and the transposed
;; layout, in WebAssembly SIMD. A q8 model's first run quantises every weight of its UNet (860M
;; values for SD-1.5) before its first step; plain JavaScript went at ~3 ns a value.
;; Built into quantize.wasm by `npm run build:wasm` (test/engine/quantize.test.ts checks that the
;; committed binary is this text's).
;;
;; Arithmetic, in float32 throughout: for a row whose largest |w| is max > 0,
;;   scale = max / levels, multiplier = levels / max, q = floor(w · multiplier + 0.5);
;; an all-zero row has scale and multiplier 1.
(module
  (memory (export "memory") 1)

  ;; For `count` rows of `n` floats from `src`: each row's scale and multiplier (float32) to
  ;; `scales` and `multipliers`. Returns 0, or 1 + the first row holding a NaN or an infinity.
  ;; The largest |w| is found on the bits: with the sign cleared, an IEEE float's bits order as its
  ;; magnitude, and an infinity's or a NaN's are at least 0x7f800000. Integer max is one instruction
  ;; where f32x4.max (NaN-propagating) is several, and four running maxima do not wait on each other.
  (func (export "rowScales") (param $src i32) (param $count i32) (param $n i32) (param $levels f32) (param $scales i32) (param $multipliers i32) (result i32)
    (local $r i32) (local $p i32) (local $end i32) (local $end4 i32) (local $end16 i32) (local $abs v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128) (local $bits i32) (local $max f32) (local $positive i32)
    (local.set $abs (v128.const i32x4 0x7fffffff 0x7fffffff 0x7fffffff 0x7fffffff))
    (block $rowsDone
      (loop $rows
        (br_if $rowsDone (i32.ge_u (local.get $r) (local.get $count)))
        (local.set $p (i32.add (local.get $src) (i32.shl (i32.mul (local.get $r) (local.get $n)) (i32.const 2))))
        (local.set $end (i32.add (local.get $p) (i32.shl (local.get $n) (i32.const 2))))
        (local.set $end4 (i32.add (local.get $p) (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2))))
        (local.set $end16 (i32.add (local.get $p) (i32.shl (i32.and (local.get $n) (i32.const -16)) (i32.const 2))))
        (local.set $a0 (v128.const i32x4 0 0 0 0))
        (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $a2 (v128.const i32x4 0 0 0 0))
        (local.set $a3 (v128.const i32x4 0 0 0 0))
        (block $sixteenDone
          (loop $sixteen
            (br_if $sixteenDone (i32.ge_u (local.get $p) (local.get $end16)))
            (local.set $a0 (i32x4.max_s (local.get $a0) (v128.and (v128.load (local.get $p)) (local.get $abs))))
            (local.set $a1 (i32x4.max_s (local.get $a1) (v128.and (v128.load offset=16 (local.get $p)) (local.get $abs))))
            (local.set $a2 (i32x4.max_s (local.get $a2) (v128.and (v128.load offset=32 (local.get $p)) (local.get $abs))))
            (local.set $a3 (i32x4.max_s (local.get $a3) (v128.and (v128.load offset=48 (local.get $p)) (local.get $abs))))
            (local.set $p (i32.add (local.get $p) (i32.const 64)))
            (br $sixteen)))
        (block $fourDone
          (loop $four
            (br_if $fourDone (i32.ge_u (local.get $p) (local.get $end4)))
            (local.set $a0 (i32x4.max_s (local.get $a0) (v128.and (v128.load (local.get $p)) (local.get $abs))))
            (local.set $p (i32.add (local.get $p) (i32.const 16)))
            (br $four)))
        (local.set $a0 (i32x4.max_s (i32x4.max_s (local.get $a0) (local.get $a1)) (i32x4.max_s (local.get $a2) (local.get $a3))))
        (local.set $bits (i32x4.extract_lane 0 (local.get $a0)))
        (if (i32.gt_s (i32x4.extract_lane 1 (local.get $a0)) (local.get $bits)) (then (local.set $bits (i32x4.extract_lane 1 (local.get $a0)))))
        (if (i32.gt_s (i32x4.extract_lane 2 (local.get $a0)) (local.get $bits)) (then (local.set $bits (i32x4.extract_lane 2 (local.get $a0)))))
        (if (i32.gt_s (i32x4.extract_lane 3 (local.get $a0)) (local.get $bits)) (then (local.set $bits (i32x4.extract_lane 3 (local.get $a0)))))
        (block $oneDone
          (loop $one
            (br_if $oneDone (i32.ge_u (local.get $p) (local.get $end)))
            (if (i32.gt_s (i32.and (i32.load (local.get $p)) (i32.const 0x7fffffff)) (local.get $bits))
              (then (local.set $bits (i32.and (i32.load (local.get $p)) (i32.const 0x7fffffff)))))
            (local.set $p (i32.add (local.get $p) (i32.const 4)))
            (br $one)))
        (if (i32.ge_s (local.get $bits) (i32.const 0x7f800000))
          (then (return (i32.add (local.get $r) (i32.const 1)))))
        (local.set $max (f32.reinterpret_i32 (local.get $bits)))
        (local.set $positive (f32.gt (local.get $max) (f32.const 0)))
        (f32.store
          (i32.add (local.get $scales) (i32.shl (local.get $r) (i32.const 2)))
          (select (f32.div (local.get $max) (local.get $levels)) (f32.const 1) (local.get $positive)))
        (f32.store
          (i32.add (local.get $multipliers) (i32.shl (local.get $r) (i32.const 2)))
          (select (f32.div (local.get $levels) (local.get $max)) (f32.const 1) (local.get $positive)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rows)))
    (i32.const 0))

  ;; Rounds `count` rows of `n` floats from `src`, each by its row's multiplier, to int8 at `dst`
  ;; (same row-major layout), 16 values a step, written out in full (a call per four values cost
  ;; more than the arithmetic). floor(w · multiplier + 0.5) is made an integer by adding 1.5 · 2²³,
  ;; which puts it (|v| ≤ 128) in the low mantissa bits exactly, and subtracting that float's bits:
  ;; two instructions where i32x4.trunc_sat_f32x4_s is several.
  (func (export "quantizeRows") (param $src i32) (param $count i32) (param $n i32) (param $multipliers i32) (param $dst i32)
    (local $r i32) (local $p i32) (local $q i32) (local $end i32) (local $end16 i32) (local $m v128) (local $mf f32)
    (local $half v128) (local $magic v128) (local $magicBits v128)
    (local.set $half (v128.const f32x4 0.5 0.5 0.5 0.5))
    (local.set $magic (v128.const f32x4 0x1.8p23 0x1.8p23 0x1.8p23 0x1.8p23))
    (local.set $magicBits (v128.const i32x4 0x4b400000 0x4b400000 0x4b400000 0x4b400000))
    (block $rowsDone
      (loop $rows
        (br_if $rowsDone (i32.ge_u (local.get $r) (local.get $count)))
        (local.set $mf (f32.load (i32.add (local.get $multipliers) (i32.shl (local.get $r) (i32.const 2)))))
        (local.set $m (f32x4.splat (local.get $mf)))
        (local.set $p (i32.add (local.get $src) (i32.shl (i32.mul (local.get $r) (local.get $n)) (i32.const 2))))
        (local.set $q (i32.add (local.get $dst) (i32.mul (local.get $r) (local.get $n))))
        (local.set $end (i32.add (local.get $p) (i32.shl (local.get $n) (i32.const 2))))
        (local.set $end16 (i32.add (local.get $p) (i32.shl (i32.and (local.get $n) (i32.const -16)) (i32.const 2))))
        (block $sixteenDone
          (loop $sixteen
            (br_if $sixteenDone (i32.ge_u (local.get $p) (local.get $end16)))
            (v128.store (local.get $q)
              (i8x16.narrow_i16x8_s
                (i16x8.narrow_i32x4_s
                  (i32x4.sub
                    (f32x4.add (f32x4.floor (f32x4.add (f32x4.mul (v128.load (local.get $p)) (local.get $m)) (local.get $half))) (local.get $magic))
                    (local.get $magicBits))
                  (i32x4.sub
                    (f32x4.add (f32x4.floor (f32x4.add (f32x4.mul (v128.load offset=16 (local.get $p)) (local.get $m)) (local.get $half))) (local.get $magic))
                    (local.get $magicBits)))
                (i16x8.narrow_i32x4_s
                  (i32x4.sub
                    (f32x4.add (f32x4.floor (f32x4.add (f32x4.mul (v128.load offset=32 (local.get $p)) (local.get $m)) (local.get $half))) (local.get $magic))
                    (local.get $magicBits))
                  (i32x4.sub
                    (f32x4.add (f32x4.floor (f32x4.add (f32x4.mul (v128.load offset=48 (local.get $p)) (local.get $m)) (local.get $half))) (local.get $magic))
                    (local.get $magicBits)))))
            (local.set $p (i32.add (local.get $p) (i32.const 64)))
            (local.set $q (i32.add (local.get $q) (i32.const 16)))
            (br $sixteen)))
        (block $oneDone
          (loop $one
            (br_if $oneDone (i32.ge_u (local.get $p) (local.get $end)))
            (i32.store8 (local.get $q)
              (i32.trunc_sat_f32_s (f32.floor (f32.add (f32.mul (f32.load (local.get $p)) (local.get $mf)) (f32.const 0.5)))))
            (local.set $p (i32.add (local.get $p) (i32.const 4)))
            (local.set $q (i32.add (local.get $q) (i32.const 1)))
            (br $one)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rows)))
  )

  ;; Moves `count` rows of int8 [Cin, taps] values from `src` (rows r0, r0 + 1, … of a weight with
  ;; `rows` output channels) to their places in the [K, rows] operand at `dst`, K = taps · Cin in
  ;; patch order: value (r, c, t) goes to dst[(t · Cin + c) · rows + r0 + r]. Tiles of 16 rows × 16
  ;; values are transposed in registers (four rounds of interleaving rows i and i + 8 transpose a
  ;; 16 × 16 byte matrix) and their 16 columns stored through `scratch` (256 bytes); the rows and
  ;; values past the last whole tile go one byte at a time.
  (func (export "transposeRows") (param $src i32) (param $count i32) (param $cin i32) (param $taps i32) (param $dst i32) (param $rows i32) (param $r0 i32) (param $scratch i32)
    (local $n i32) (local $n16 i32) (local $count16 i32) (local $rt i32) (local $j i32) (local $k i32) (local $c i32) (local $t i32)
    (local $o i32) (local $p i32) (local $r i32) (local $step i32)
    (local $x0 v128) (local $x1 v128) (local $x2 v128) (local $x3 v128) (local $x4 v128) (local $x5 v128) (local $x6 v128) (local $x7 v128) (local $x8 v128) (local $x9 v128) (local $x10 v128) (local $x11 v128) (local $x12 v128) (local $x13 v128) (local $x14 v128) (local $x15 v128) (local $y0 v128) (local $y1 v128) (local $y2 v128) (local $y3 v128) (local $y4 v128) (local $y5 v128) (local $y6 v128) (local $y7 v128) (local $y8 v128) (local $y9 v128) (local $y10 v128) (local $y11 v128) (local $y12 v128) (local $y13 v128) (local $y14 v128) (local $y15 v128)
    (local.set $n (i32.mul (local.get $cin) (local.get $taps)))
    (local.set $n16 (i32.and (local.get $n) (i32.const -16)))
    (local.set $count16 (i32.and (local.get $count) (i32.const -16)))
    (local.set $step (i32.mul (local.get $cin) (local.get $rows)))
    ;; Row tiles of 16, then the rows left, each over every column j = c · taps + t, whose place
    ;; o = dst + (t · Cin + c) · rows + r0 + first row follows j (one step of Cin · rows per tap).
    (block $rowTilesDone
      (loop $rowTiles
        (br_if $rowTilesDone (i32.ge_u (local.get $rt) (local.get $count)))
        (local.set $c (i32.const 0))
        (local.set $t (i32.const 0))
        (local.set $o (i32.add (local.get $dst) (i32.add (local.get $r0) (local.get $rt))))
        (local.set $j (i32.const 0))
        (block $columnsDone
          (loop $columns
            (br_if $columnsDone (i32.ge_u (local.get $j) (local.get $n)))
            (if (i32.and (i32.lt_u (local.get $rt) (local.get $count16)) (i32.eqz (i32.and (local.get $j) (i32.const 15))))
              (then
                (if (i32.lt_u (local.get $j) (local.get $n16))
                  (then
                    ;; a whole tile: columns j … j + 15 of rows rt … rt + 15
                    (local.set $p (i32.add (local.get $src) (i32.add (i32.mul (local.get $rt) (local.get $n)) (local.get $j))))
            (local.set $x0 (v128.load (local.get $p)))
            (local.set $p (i32.add (local.get $p) (local.get $n)))
            (local.set $x1 (v128.load (local.get $p)))
            (local.set $p (i32.add (local.get $p) (local.get $n)))
            (local.set $x2 (v128.load (local.get $p)))
            (local.set $p (i32.add (local.get $p) (local.get $n)))
            (local.set $x3 (v128.load (local.get $p)))
            (local.set $p (i32.add (local.get $p) (local.get $n)))
            (local.set $x4 (v128.load (local.get $p)))
            (local.set $p (i32.add (local.get $p) (local.get $n)))
            (local.set $x5 (v128.load (local.get $p)))
            (local.set $p (i32.add (local.get $p) (local.get $n)))
            (local.set $x6 (v128.load (local.get $p)))
            (local.set $p (i32.add (local.get $p) (local.get $n)))
            (local.set $x7 (v128.load (local.get $p)))
            (local.set $p (i32.add (local.get $p) (local.get $n)))
            (local.set $x8 (v128.load (local.get $p)))
            (local.set $p (i32.add (local.get $p) (local.get $n)))
            (local.set $x9 (v128.load (local.get $p)))
            (local.set $p (i32.add (local.get $p) (local.get $n)))
            (local.set $x10 (v128.load (local.get $p)))
            (local.set $p (i32.add (local.get $p) (local.get $n)))
            (local.set $x11 (v128.load (local.get $p)))
            (local.set $p (i32.add (local.get $p) (local.get $n)))
            (local.set $x12 (v128.load (local.get $p)))
            (local.set $p (i32.add (local.get $p) (local.get $n)))
            (local.set $x13 (v128.load (local.get $p)))
            (local.set $p (i32.add (local.get $p) (local.get $n)))
            (local.set $x14 (v128.load (local.get $p)))
            (local.set $p (i32.add (local.get $p) (local.get $n)))
            (local.set $x15 (v128.load (local.get $p)))
            (local.set $p (i32.add (local.get $p) (local.get $n)))
            (local.set $y0 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $x0) (local.get $x8)))
            (local.set $y1 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $x0) (local.get $x8)))
            (local.set $y2 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $x1) (local.get $x9)))
            (local.set $y3 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $x1) (local.get $x9)))
            (local.set $y4 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $x2) (local.get $x10)))
            (local.set $y5 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $x2) (local.get $x10)))
            (local.set $y6 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $x3) (local.get $x11)))
            (local.set $y7 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $x3) (local.get $x11)))
            (local.set $y8 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $x4) (local.get $x12)))
            (local.set $y9 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $x4) (local.get $x12)))
            (local.set $y10 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $x5) (local.get $x13)))
            (local.set $y11 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $x5) (local.get $x13)))
            (local.set $y12 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $x6) (local.get $x14)))
            (local.set $y13 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $x6) (local.get $x14)))
            (local.set $y14 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $x7) (local.get $x15)))
            (local.set $y15 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $x7) (local.get $x15)))
            (local.set $x0 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $y0) (local.get $y8)))
            (local.set $x1 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $y0) (local.get $y8)))
            (local.set $x2 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $y1) (local.get $y9)))
            (local.set $x3 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $y1) (local.get $y9)))
            (local.set $x4 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $y2) (local.get $y10)))
            (local.set $x5 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $y2) (local.get $y10)))
            (local.set $x6 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $y3) (local.get $y11)))
            (local.set $x7 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $y3) (local.get $y11)))
            (local.set $x8 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $y4) (local.get $y12)))
            (local.set $x9 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $y4) (local.get $y12)))
            (local.set $x10 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $y5) (local.get $y13)))
            (local.set $x11 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $y5) (local.get $y13)))
            (local.set $x12 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $y6) (local.get $y14)))
            (local.set $x13 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $y6) (local.get $y14)))
            (local.set $x14 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $y7) (local.get $y15)))
            (local.set $x15 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $y7) (local.get $y15)))
            (local.set $y0 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $x0) (local.get $x8)))
            (local.set $y1 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $x0) (local.get $x8)))
            (local.set $y2 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $x1) (local.get $x9)))
            (local.set $y3 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $x1) (local.get $x9)))
            (local.set $y4 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $x2) (local.get $x10)))
            (local.set $y5 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $x2) (local.get $x10)))
            (local.set $y6 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $x3) (local.get $x11)))
            (local.set $y7 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $x3) (local.get $x11)))
            (local.set $y8 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $x4) (local.get $x12)))
            (local.set $y9 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $x4) (local.get $x12)))
            (local.set $y10 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $x5) (local.get $x13)))
            (local.set $y11 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $x5) (local.get $x13)))
            (local.set $y12 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $x6) (local.get $x14)))
            (local.set $y13 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $x6) (local.get $x14)))
            (local.set $y14 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $x7) (local.get $x15)))
            (local.set $y15 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $x7) (local.get $x15)))
            (local.set $x0 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $y0) (local.get $y8)))
            (local.set $x1 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $y0) (local.get $y8)))
            (local.set $x2 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $y1) (local.get $y9)))
            (local.set $x3 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $y1) (local.get $y9)))
            (local.set $x4 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $y2) (local.get $y10)))
            (local.set $x5 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $y2) (local.get $y10)))
            (local.set $x6 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $y3) (local.get $y11)))
            (local.set $x7 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $y3) (local.get $y11)))
            (local.set $x8 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $y4) (local.get $y12)))
            (local.set $x9 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $y4) (local.get $y12)))
            (local.set $x10 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $y5) (local.get $y13)))
            (local.set $x11 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $y5) (local.get $y13)))
            (local.set $x12 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $y6) (local.get $y14)))
            (local.set $x13 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $y6) (local.get $y14)))
            (local.set $x14 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $y7) (local.get $y15)))
            (local.set $x15 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $y7) (local.get $y15)))
            (v128.store offset=0 (local.get $scratch) (local.get $x0))
            (v128.store offset=16 (local.get $scratch) (local.get $x1))
            (v128.store offset=32 (local.get $scratch) (local.get $x2))
            (v128.store offset=48 (local.get $scratch) (local.get $x3))
            (v128.store offset=64 (local.get $scratch) (local.get $x4))
            (v128.store offset=80 (local.get $scratch) (local.get $x5))
            (v128.store offset=96 (local.get $scratch) (local.get $x6))
            (v128.store offset=112 (local.get $scratch) (local.get $x7))
            (v128.store offset=128 (local.get $scratch) (local.get $x8))
            (v128.store offset=144 (local.get $scratch) (local.get $x9))
            (v128.store offset=160 (local.get $scratch) (local.get $x10))
            (v128.store offset=176 (local.get $scratch) (local.get $x11))
            (v128.store offset=192 (local.get $scratch) (local.get $x12))
            (v128.store offset=208 (local.get $scratch) (local.get $x13))
            (v128.store offset=224 (local.get $scratch) (local.get $x14))
            (v128.store offset=240 (local.get $scratch) (local.get $x15))
                    (local.set $k (i32.const 0))
                    (block $tileDone
                      (loop $tile
                        (br_if $tileDone (i32.ge_u (local.get $k) (i32.const 16)))
                        (v128.store (local.get $o) (v128.load (i32.add (local.get $scratch) (i32.shl (local.get $k) (i32.const 4)))))
                        (local.set $j (i32.add (local.get $j) (i32.const 1)))
                        (local.set $t (i32.add (local.get $t) (i32.const 1)))
                        (if (i32.eq (local.get $t) (local.get $taps))
                          (then
                            (local.set $t (i32.const 0))
                            (local.set $c (i32.add (local.get $c) (i32.const 1)))
                            (local.set $o (i32.add (local.get $dst) (i32.add (i32.add (local.get $r0) (local.get $rt)) (i32.mul (local.get $c) (local.get $rows))))))
                          (else (local.set $o (i32.add (local.get $o) (local.get $step)))))
                        (local.set $k (i32.add (local.get $k) (i32.const 1)))
                        (br $tile)))
                    (br $columns)))))
            ;; one column of this row tile (or of the rows left), a byte at a time
            (local.set $r (i32.const 0))
            (local.set $p (i32.add (local.get $src) (i32.add (i32.mul (local.get $rt) (local.get $n)) (local.get $j))))
            (block $bytesDone
              (loop $bytes
                (br_if $bytesDone (i32.ge_u (local.get $r) (select (i32.const 16) (i32.sub (local.get $count) (local.get $rt)) (i32.lt_u (local.get $rt) (local.get $count16)))))
                (i32.store8 (i32.add (local.get $o) (local.get $r)) (i32.load8_u (local.get $p)))
                (local.set $p (i32.add (local.get $p) (local.get $n)))
                (local.set $r (i32.add (local.get $r) (i32.const 1)))
                (br $bytes)))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (local.set $t (i32.add (local.get $t) (i32.const 1)))
            (if (i32.eq (local.get $t) (local.get $taps))
              (then
                (local.set $t (i32.const 0))
                (local.set $c (i32.add (local.get $c) (i32.const 1)))
                (local.set $o (i32.add (local.get $dst) (i32.add (i32.add (local.get $r0) (local.get $rt)) (i32.mul (local.get $c) (local.get $rows))))))
              (else (local.set $o (i32.add (local.get $o) (local.get $step)))))
            (br $columns)))
        (local.set $rt (i32.add (local.get $rt) (i32.const 16)))
        (br $rowTiles)))
  )

  ;; Widens `count` IEEE half floats at `src` to float32 at `dst`, 8 a step. A half's exponent and
  ;; mantissa moved up 13 bits read as a float32 2^112 too small, normal or subnormal alike, so one
  ;; multiply rebiases it exactly; infinities and NaNs (exponent all ones) get float32's all-ones
  ;; exponent instead, with their mantissa kept. 16-bit checkpoints (most SD files) widen here
  ;; before they are quantised: plain JavaScript's table lookup took ~1.9 ns a value.
  (func (export "widenHalves") (param $src i32) (param $count i32) (param $dst i32)
    (local $i i32) (local $end8 i32) (local $halves v128) (local $h i32) (local $h4 v128) (local $moved v128)
    (local.set $end8 (i32.and (local.get $count) (i32.const -8)))
    (block $eightDone
      (loop $eight
        (br_if $eightDone (i32.ge_u (local.get $i) (local.get $end8)))
        (local.set $halves (v128.load (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 1)))))
        ;; $widen4 written out twice: a call per four values cost more than the arithmetic
        (local.set $h4 (i32x4.extend_low_i16x8_u (local.get $halves)))
        (local.set $moved (i32x4.shl (v128.and (local.get $h4) (v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff)) (i32.const 13)))
        (v128.store (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 2)))
          (v128.or
            (i32x4.shl (v128.and (local.get $h4) (v128.const i32x4 0x8000 0x8000 0x8000 0x8000)) (i32.const 16))
            (v128.bitselect
              (v128.or (local.get $moved) (v128.const i32x4 0x7f800000 0x7f800000 0x7f800000 0x7f800000))
              (f32x4.mul (local.get $moved) (v128.const i32x4 0x77800000 0x77800000 0x77800000 0x77800000))
              (i32x4.eq (v128.and (local.get $h4) (v128.const i32x4 0x7c00 0x7c00 0x7c00 0x7c00)) (v128.const i32x4 0x7c00 0x7c00 0x7c00 0x7c00)))))
        (local.set $h4 (i32x4.extend_high_i16x8_u (local.get $halves)))
        (local.set $moved (i32x4.shl (v128.and (local.get $h4) (v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff)) (i32.const 13)))
        (v128.store offset=16 (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 2)))
          (v128.or
            (i32x4.shl (v128.and (local.get $h4) (v128.const i32x4 0x8000 0x8000 0x8000 0x8000)) (i32.const 16))
            (v128.bitselect
              (v128.or (local.get $moved) (v128.const i32x4 0x7f800000 0x7f800000 0x7f800000 0x7f800000))
              (f32x4.mul (local.get $moved) (v128.const i32x4 0x77800000 0x77800000 0x77800000 0x77800000))
              (i32x4.eq (v128.and (local.get $h4) (v128.const i32x4 0x7c00 0x7c00 0x7c00 0x7c00)) (v128.const i32x4 0x7c00 0x7c00 0x7c00 0x7c00)))))
        (local.set $i (i32.add (local.get $i) (i32.const 8)))
        (br $eight)))
    (block $oneDone
      (loop $one
        (br_if $oneDone (i32.ge_u (local.get $i) (local.get $count)))
        (local.set $h (i32.load16_u (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 1)))))
        (i32.store (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 2)))
          (i32x4.extract_lane 0 (call $widen4 (i32x4.splat (local.get $h)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $one)))
  )

  ;; Four halves (one in the low 16 bits of each lane) as four float32s (the tail of widenHalves).
  (func $widen4 (param $h v128) (result v128)
    (local $moved v128)
    (local.set $moved (i32x4.shl (v128.and (local.get $h) (v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff)) (i32.const 13)))
    (v128.or
      (i32x4.shl (v128.and (local.get $h) (v128.const i32x4 0x8000 0x8000 0x8000 0x8000)) (i32.const 16))
      (v128.bitselect
        (v128.or (local.get $moved) (v128.const i32x4 0x7f800000 0x7f800000 0x7f800000 0x7f800000))
        (f32x4.mul (local.get $moved) (v128.const i32x4 0x77800000 0x77800000 0x77800000 0x77800000))
        (i32x4.eq
          (v128.and (local.get $h) (v128.const i32x4 0x7c00 0x7c00 0x7c00 0x7c00))
          (v128.const i32x4 0x7c00 0x7c00 0x7c00 0x7c00)))))

  ;; Widens `count` bfloat16s at `src` to float32 at `dst`: each is a float32's upper half.
  (func (export "widenBfloat16") (param $src i32) (param $count i32) (param $dst i32)
    (local $i i32) (local $end8 i32) (local $halves v128)
    (local.set $end8 (i32.and (local.get $count) (i32.const -8)))
    (block $eightDone
      (loop $eight
        (br_if $eightDone (i32.ge_u (local.get $i) (local.get $end8)))
        (local.set $halves (v128.load (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 1)))))
        (v128.store (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 2)))
          (i32x4.shl (i32x4.extend_low_i16x8_u (local.get $halves)) (i32.const 16)))
        (v128.store offset=16 (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 2)))
          (i32x4.shl (i32x4.extend_high_i16x8_u (local.get $halves)) (i32.const 16)))
        (local.set $i (i32.add (local.get $i) (i32.const 8)))
        (br $eight)))
    (block $oneDone
      (loop $one
        (br_if $oneDone (i32.ge_u (local.get $i) (local.get $count)))
        (i32.store (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 2)))
          (i32.shl (i32.load16_u (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 1)))) (i32.const 16)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $one)))
  )
)
