;; AdamW's per-weight update (optim.ts), in WebAssembly SIMD: it runs over every trainable weight
;; each step (12.6M for the default model's UNet), where plain JavaScript took 100–150 ms a step.
;; Built into adamw.wasm by `npm run build:wasm`.
;;
;; For each weight, in float32:
;;   m = β1·m + (1 − β1)·g,  v = β2·v + (1 − β2)·g²,
;;   w = w·decay − stepOverC1·m / (√(v·overC2) + ε)
;; with decay = 1 − lr·weight decay, stepOverC1 = lr / (1 − β1^t), overC2 = 1 / (1 − β2^t).
(module
  (memory (export "memory") 1)

  ;; Updates `count` weights at `w` with their gradients at `g` and moments at `m` and `v`, in place.
  (func (export "update") (param $w i32) (param $g i32) (param $m i32) (param $v i32) (param $count i32)
    (param $beta1 f32) (param $beta2 f32) (param $stepOverC1 f32) (param $overC2 f32) (param $eps f32) (param $decay f32)
    (local $i i32) (local $end4 i32) (local $o i32)
    (local $b1 v128) (local $c1 v128) (local $b2 v128) (local $c2 v128) (local $s1 v128) (local $o2 v128) (local $e v128) (local $d v128)
    (local $gv v128) (local $mv v128) (local $vv v128)
    (local $gs f32) (local $ms f32) (local $vs f32)
    (local.set $b1 (f32x4.splat (local.get $beta1)))
    (local.set $c1 (f32x4.splat (f32.sub (f32.const 1) (local.get $beta1))))
    (local.set $b2 (f32x4.splat (local.get $beta2)))
    (local.set $c2 (f32x4.splat (f32.sub (f32.const 1) (local.get $beta2))))
    (local.set $s1 (f32x4.splat (local.get $stepOverC1)))
    (local.set $o2 (f32x4.splat (local.get $overC2)))
    (local.set $e (f32x4.splat (local.get $eps)))
    (local.set $d (f32x4.splat (local.get $decay)))
    (local.set $end4 (i32.and (local.get $count) (i32.const -4)))
    (block $fourDone
      (loop $four
        (br_if $fourDone (i32.ge_u (local.get $i) (local.get $end4)))
        (local.set $o (i32.shl (local.get $i) (i32.const 2)))
        (local.set $gv (v128.load (i32.add (local.get $g) (local.get $o))))
        (local.set $mv (f32x4.add
          (f32x4.mul (local.get $b1) (v128.load (i32.add (local.get $m) (local.get $o))))
          (f32x4.mul (local.get $c1) (local.get $gv))))
        (local.set $vv (f32x4.add
          (f32x4.mul (local.get $b2) (v128.load (i32.add (local.get $v) (local.get $o))))
          (f32x4.mul (local.get $c2) (f32x4.mul (local.get $gv) (local.get $gv)))))
        (v128.store (i32.add (local.get $m) (local.get $o)) (local.get $mv))
        (v128.store (i32.add (local.get $v) (local.get $o)) (local.get $vv))
        (v128.store (i32.add (local.get $w) (local.get $o))
          (f32x4.sub
            (f32x4.mul (v128.load (i32.add (local.get $w) (local.get $o))) (local.get $d))
            (f32x4.div
              (f32x4.mul (local.get $s1) (local.get $mv))
              (f32x4.add (f32x4.sqrt (f32x4.mul (local.get $vv) (local.get $o2))) (local.get $e)))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $four)))
    (block $oneDone
      (loop $one
        (br_if $oneDone (i32.ge_u (local.get $i) (local.get $count)))
        (local.set $o (i32.shl (local.get $i) (i32.const 2)))
        (local.set $gs (f32.load (i32.add (local.get $g) (local.get $o))))
        (local.set $ms (f32.add
          (f32.mul (local.get $beta1) (f32.load (i32.add (local.get $m) (local.get $o))))
          (f32.mul (f32.sub (f32.const 1) (local.get $beta1)) (local.get $gs))))
        (local.set $vs (f32.add
          (f32.mul (local.get $beta2) (f32.load (i32.add (local.get $v) (local.get $o))))
          (f32.mul (f32.sub (f32.const 1) (local.get $beta2)) (f32.mul (local.get $gs) (local.get $gs)))))
        (f32.store (i32.add (local.get $m) (local.get $o)) (local.get $ms))
        (f32.store (i32.add (local.get $v) (local.get $o)) (local.get $vs))
        (f32.store (i32.add (local.get $w) (local.get $o))
          (f32.sub
            (f32.mul (f32.load (i32.add (local.get $w) (local.get $o))) (local.get $decay))
            (f32.div
              (f32.mul (local.get $stepOverC1) (local.get $ms))
              (f32.add (f32.sqrt (f32.mul (local.get $vs) (local.get $overC2))) (local.get $eps)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $one)))
  )
)
