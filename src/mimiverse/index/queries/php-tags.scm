; PHP tags: definitions and references (for chunking and the symbol map).

(class_declaration
  name: (name) @name.definition.class) @definition.class

(interface_declaration
  name: (name) @name.definition.interface) @definition.interface

(trait_declaration
  name: (name) @name.definition.trait) @definition.trait

(enum_declaration
  name: (name) @name.definition.enum) @definition.enum

(namespace_definition
  name: (namespace_name) @name.definition.namespace) @definition.namespace

(function_definition
  name: (name) @name.definition.function) @definition.function

(method_declaration
  name: (name) @name.definition.method) @definition.method

(function_call_expression
  function: [
    (name) @name.reference.call
    (qualified_name
      (name) @name.reference.call)
  ]) @reference.call

(member_call_expression
  name: (name) @name.reference.call) @reference.call

(scoped_call_expression
  name: (name) @name.reference.call) @reference.call

(object_creation_expression
  [
    (name) @name.reference.class
    (qualified_name
      (name) @name.reference.class)
  ]) @reference.class

(base_clause
  [
    (name) @name.reference.class
    (qualified_name
      (name) @name.reference.class)
  ]) @reference.class

(class_interface_clause
  [
    (name) @name.reference.implementation
    (qualified_name
      (name) @name.reference.implementation)
  ]) @reference.implementation

(namespace_use_clause
  [
    (name)
    (qualified_name)
  ] @name.reference.import) @reference.import
