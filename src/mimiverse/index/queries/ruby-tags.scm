; Ruby tags: definitions and references (for chunking and the symbol map).

(class
  name: [
    (constant) @name.definition.class
    (scope_resolution
      name: (_) @name.definition.class)
  ]) @definition.class

(module
  name: [
    (constant) @name.definition.module
    (scope_resolution
      name: (_) @name.definition.module)
  ]) @definition.module

(method
  name: (_) @name.definition.method) @definition.method

(singleton_method
  name: (_) @name.definition.method) @definition.method

(call
  method: (identifier) @name.reference.call) @reference.call

(superclass
  [
    (constant) @name.reference.class
    (scope_resolution
      name: (constant) @name.reference.class)
  ]) @reference.class

(call
  method: (identifier) @_require
  arguments: (argument_list
    (string
      (string_content) @name.reference.import))
  (#match? @_require "^require(_relative)?$")) @reference.import
