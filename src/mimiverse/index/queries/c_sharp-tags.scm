; C# tags: definitions and references (for chunking and the symbol map).

(class_declaration
  name: (identifier) @name.definition.class) @definition.class

(record_declaration
  name: (identifier) @name.definition.class) @definition.class

(struct_declaration
  name: (identifier) @name.definition.struct) @definition.struct

(interface_declaration
  name: (identifier) @name.definition.interface) @definition.interface

(enum_declaration
  name: (identifier) @name.definition.enum) @definition.enum

(namespace_declaration
  name: (_) @name.definition.namespace) @definition.namespace

(file_scoped_namespace_declaration
  name: (_) @name.definition.namespace) @definition.namespace

(method_declaration
  name: (identifier) @name.definition.method) @definition.method

(constructor_declaration
  name: (identifier) @name.definition.method) @definition.method

(local_function_statement
  name: (identifier) @name.definition.function) @definition.function

(property_declaration
  name: (identifier) @name.definition.property) @definition.property

(invocation_expression
  function: [
    (identifier) @name.reference.call
    (member_access_expression
      name: (identifier) @name.reference.call)
  ]) @reference.call

(object_creation_expression
  type: [
    (identifier) @name.reference.class
    (generic_name
      (identifier) @name.reference.class)
  ]) @reference.class

(base_list
  [
    (identifier) @name.reference.class
    (generic_name
      (identifier) @name.reference.class)
  ]) @reference.class

(using_directive
  [
    (identifier)
    (qualified_name)
  ] @name.reference.import) @reference.import
